#!/usr/bin/env bash
# Starts one KRaft node (broker + controller) of the apache/kafka image with SASL_SSL, for
# docker-compose.yml and deploy/k8s (docs/security.md):
#   SASL_SSL   :9092  clients and inter-broker, SCRAM-SHA-512, TLS from broker.p12
#   CONTROLLER :9093  SSL with client certificates required (mutual TLS): KRaft controllers
#                     cannot take SCRAM, whose credentials live in the metadata log they serve
# Secrets, mounted read-only in /etc/kafka/secrets (scripts/kafka-dev-secrets.sh makes
# development ones): broker.p12 and keystore-password, ca.pem (the truststore),
# broker-password (SCRAM user "broker"), client-password (the clients' SCRAM user,
# $SCRAM_CLIENT_USERNAME).  No password is in the environment.
#
# KRaft keeps SCRAM credentials in the metadata log, so both users must be written when the
# storage is first formatted (kafka-storage.sh format --add-scram); the image's own start
# formats without them.  So: the image writes server.properties from the KAFKA_*
# environment (its format pointed at a scratch directory), this formats the real log
# directory with the users, then starts the broker.
set -euo pipefail
secrets=/etc/kafka/secrets
read_secret() { local v; v=$(cat "$secrets/$1"); [[ -n $v ]] || { echo "缺少密钥 empty secret $secrets/$1" >&2; exit 1; }; printf %s "$v"; }
broker_password=$(read_secret broker-password)
client_password=$(read_secret client-password)
: "${SCRAM_CLIENT_USERNAME:?the clients SCRAM user}" "${KAFKA_LOG_DIRS:?}" "${CLUSTER_ID:?}"

export KAFKA_LISTENER_NAME_SASL__SSL_SCRAM___SHA___512_SASL_JAAS_CONFIG="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"broker\" password=\"${broker_password}\";"
# The image insists on KAFKA_OPTS when a SASL listener is advertised; the JAAS settings are
# the listener's own (above), so this only says so.
export KAFKA_OPTS="${KAFKA_OPTS:--Dcitybrain.kafka.jaas=per-listener}"

. /etc/kafka/docker/bash-config
. /etc/kafka/docker/configureDefaults
. /etc/kafka/docker/configure     # checks the keystore files; exports their location and passwords

data_dirs=$KAFKA_LOG_DIRS
scratch=/tmp/kafka-config-only
rm -rf "$scratch"
if ! out=$(KAFKA_LOG_DIRS=$scratch /opt/kafka/bin/kafka-run-class.sh kafka.docker.KafkaDockerWrapper setup \
      --default-configs-dir /etc/kafka/docker --mounted-configs-dir /mnt/shared/config \
      --final-configs-dir /opt/kafka/config 2>&1); then
  grep -qi "already formatted" <<<"$out" || { echo "$out" >&2; exit 1; }
fi
rm -rf "$scratch"
sed -i "s|^log.dirs=.*|log.dirs=${data_dirs}|" /opt/kafka/config/server.properties

/opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id "$CLUSTER_ID" \
  -c /opt/kafka/config/server.properties \
  --add-scram "SCRAM-SHA-512=[name=broker,password=${broker_password}]" \
  --add-scram "SCRAM-SHA-512=[name=${SCRAM_CLIENT_USERNAME},password=${client_password}]"

# For the health check and an operator's kafka-*.sh --command-config: the broker's own user.
umask 077
cat > /opt/kafka/config/client-sasl-ssl.properties <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=${KAFKA_LISTENER_NAME_SASL__SSL_SCRAM___SHA___512_SASL_JAAS_CONFIG}
ssl.truststore.type=PEM
ssl.truststore.location=${secrets}/ca.pem
PROPS

exec /opt/kafka/bin/kafka-server-start.sh /opt/kafka/config/server.properties
