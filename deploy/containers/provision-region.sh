#!/bin/sh
# One-shot provisioning of a Vigil region: its request and dead-letter streams, its task and
# actor buckets, and the shared model catalog (nodes/launcher/provision.ts, the same code
# `npm start` runs). Idempotent: run it at every deployment, before the region's nodes start.
#
# Runs as the `admin` NATS user. Each region is a NATS cluster named after the region
# (deploy/nats/hub.conf, deploy/k8s/nats), and its streams and buckets are placed in that cluster
# explicitly, wherever the connection lands. Environment: VIGIL_REGION, VIGIL_REPLICAS (1, or 3 on
# a three-node cluster), and the NATS connection variables every node reads (NATS_URL, NATS_NKEY,
# NATS_INBOX_PREFIX, NATS_CA, ...). Gives up after VIGIL_PROVISION_TIMEOUT_MS (120 000).
set -eu
: "${VIGIL_REGION:?set VIGIL_REGION to the region to provision}"
# The job itself is nodes/provision/main.ts, compiled into dist/ like every node.
VIGIL_APP_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export VIGIL_APP_ROOT

exec node "$VIGIL_APP_ROOT/dist/nodes/provision/main.js"
