#!/usr/bin/env bash
# DEVELOPMENT secrets for the SASL_SSL Kafka of docker-compose.yml and deploy/k8s
# (docs/security.md): a CA made on this machine, one broker certificate for every broker
# name of both (kafka, kafka-2, kafka-3; *.kafka.citybrain.svc; localhost), its PKCS12
# keystore, and random passwords for the SCRAM users "broker" (inter-broker) and
# "citybrain" (every client).  Production takes its certificates from the city's PKI and
# its passwords from its secret store; nothing here is committed (deploy/kafka/secrets/ is
# in .gitignore).
#
#   scripts/kafka-dev-secrets.sh          → deploy/kafka/secrets/ (kept if already there)
#   scripts/kafka-dev-secrets.sh --k8s    → the same, then the Secrets kafka-tls and
#                                           kafka-sasl as YAML: | kubectl apply -f -
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${CITYBRAIN_KAFKA_SECRETS_DIR:-$root/deploy/kafka/secrets}
mkdir -p "$out"
cd "$out"

password() { [[ -s $1 ]] || openssl rand -hex 24 > "$1"; }
password keystore-password
password broker-password
password client-password

if [[ ! -s broker.p12 ]]; then
  echo "▸ 生成开发证书 making the development CA and broker certificate in $out" >&2
  openssl req -x509 -newkey rsa:3072 -nodes -keyout ca.key -out ca.pem -days 825 -subj "/CN=citybrain dev Kafka CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:3072 -nodes -keyout broker.key -out broker.csr -subj "/CN=kafka" 2>/dev/null
  # serverAuth for the listeners; clientAuth because the controller listener takes only
  # brokers that show this certificate (mutual TLS).
  cat > broker.ext <<'EXT'
subjectAltName = DNS:kafka, DNS:kafka-2, DNS:kafka-3, DNS:*.kafka.citybrain.svc, DNS:*.kafka.citybrain.svc.cluster.local, DNS:localhost, IP:127.0.0.1
extendedKeyUsage = serverAuth, clientAuth
keyUsage = critical, digitalSignature, keyEncipherment
EXT
  openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out broker.pem -days 825 \
    -extfile broker.ext 2>/dev/null
  openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker -out broker.p12 \
    -passout file:keystore-password
  rm -f broker.csr broker.ext ca.srl
fi
# The containers' users (the Kafka image's uid 1000, the worker's 10001) read the mounted
# files: readable by all on this development machine, never so in production.
chmod 644 ca.pem broker.p12 keystore-password broker-password client-password
chmod 600 ca.key broker.key

if [[ ${1:-} == --k8s ]]; then
  b64() { base64 -w0 < "$1"; }
  cat <<YAML
apiVersion: v1
kind: Secret
metadata: {name: kafka-tls, namespace: citybrain}
type: Opaque
data:
  ca.pem: $(b64 ca.pem)
  broker.p12: $(b64 broker.p12)
  keystore-password: $(b64 keystore-password)
---
apiVersion: v1
kind: Secret
metadata: {name: kafka-sasl, namespace: citybrain}
type: Opaque
data:
  broker-password: $(b64 broker-password)
  client-password: $(b64 client-password)
YAML
fi
