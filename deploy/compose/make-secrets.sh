#!/bin/sh
# Generates everything the compose setup needs and the repository must never hold, into
# deploy/compose/secrets/ (git-ignored) and deploy/compose/.env (git-ignored):
#   secrets/nats/   per-role NATS nkey seeds and accounts.conf (`npx vigil creds generate`)
#   secrets/tls/    a private CA and one certificate for the NATS servers (openssl)
#   .env            route and gateway passwords, the demo API key, and the uid/gid the Vigil
#                   containers run as (yours, so that they can read the 0600 seed files)
# Existing seeds, keys and passwords are kept: run it again after adding a region.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secrets="$here/secrets"
mkdir -p "$secrets/tls"
chmod 700 "$secrets"

(cd "$root" && npm run --silent vigil -- creds generate --out "$secrets/nats" --regions eu,us)

tls="$secrets/tls"
if [ ! -f "$tls/ca.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=Vigil compose CA" -keyout "$tls/ca-key.pem" -out "$tls/ca.pem" 2>/dev/null
fi
if [ ! -f "$tls/server.pem" ]; then
  # One certificate for every NATS server of the compose file: its service names, and the
  # loopback address the host's clients use. Routes, gateways and leaf links dial out with it
  # too, hence clientAuth beside serverAuth.
  printf '%s\n' \
    'subjectAltName=DNS:nats-eu,DNS:nats-us,DNS:localhost,IP:127.0.0.1' \
    'extendedKeyUsage=serverAuth,clientAuth' >"$tls/server.ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=vigil-nats" \
    -keyout "$tls/server-key.pem" -out "$tls/server.csr" 2>/dev/null
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" \
    -CAcreateserial -days 825 -extfile "$tls/server.ext" -out "$tls/server.pem" 2>/dev/null
  rm -f "$tls/server.csr" "$tls/server.ext"
fi
chmod 600 "$tls"/*-key.pem

env_file="$here/.env"
if [ ! -f "$env_file" ]; then
  # Passwords are a letter and hex digits: the route password sits in route URLs, and
  # nats-server reads a substituted variable as configuration, where digits are a number (and
  # older servers, 2.10 among them, also refuse a digit followed by letters).
  {
    echo "VIGIL_NATS_ROUTE_PASSWORD=p$(openssl rand -hex 24)"
    echo "VIGIL_NATS_GATEWAY_PASSWORD=p$(openssl rand -hex 24)"
    echo "VIGIL_DEMO_KEY=$(openssl rand -hex 24)"
    echo "VIGIL_UID=$(id -u)"
    echo "VIGIL_GID=$(id -g)"
  } >"$env_file"
  chmod 600 "$env_file"
fi
echo "secrets in $secrets, passwords and the demo key in $env_file"
