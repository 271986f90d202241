#!/usr/bin/env bash
# DEVELOPMENT secrets for the notifier and the platforms' callbacks of docker-compose.yml and
# deploy/k8s (docs/notifier.md, docs/integration.md): random SMTP and SMPP passwords, the
# webhook HMAC key, each platform's callback key, and the roster — a copy of the SAMPLE
# config/roster.toml (made-up people).  A city puts its own SMSC's and mail server's
# passwords, the keys it agreed with each platform, and its real roster (people's numbers:
# personal data, docs/security.md) there instead.  Nothing here is committed
# (deploy/citybrain/secrets/ is in .gitignore).
#
#   scripts/delivery-dev-secrets.sh          → deploy/citybrain/secrets/ (kept if already there)
#   scripts/delivery-dev-secrets.sh --k8s    → the same, then the Secret citybrain-delivery
#                                              as YAML: | kubectl apply -f -
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${CITYBRAIN_DELIVERY_SECRETS_DIR:-$root/deploy/citybrain/secrets}
mkdir -p "$out"
cd "$out"

key() { [[ -s $1 ]] || openssl rand -hex 24 > "$1"; }
key smtp-password
key smpp-password
key webhook-secret
key platform-12345-secret
key platform-szcg-secret
[[ -s roster.toml ]] || cp "$root/config/roster.toml" roster.toml
# The notifier's user (uid 10001) reads the mounted files: readable by all on this
# development machine, never so in production.
chmod 644 smtp-password smpp-password webhook-secret platform-12345-secret platform-szcg-secret roster.toml

if [[ ${1:-} == --k8s ]]; then
  b64() { base64 -w0 < "$1"; }
  cat <<YAML
apiVersion: v1
kind: Secret
metadata: {name: citybrain-delivery, namespace: citybrain}
type: Opaque
data:
  roster.toml: $(b64 roster.toml)
  smtp-password: $(b64 smtp-password)
  smpp-password: $(b64 smpp-password)
  webhook-secret: $(b64 webhook-secret)
  platform-12345-secret: $(b64 platform-12345-secret)
  platform-szcg-secret: $(b64 platform-szcg-secret)
YAML
fi
