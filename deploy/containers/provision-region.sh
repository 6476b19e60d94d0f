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
VIGIL_APP_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export VIGIL_APP_ROOT

exec node --input-type=module -e '
const root = process.env.VIGIL_APP_ROOT;
const { jsonLogger } = await import(`${root}/dist/actors/log.js`);
const { createBuiltinModels } = await import(`${root}/dist/actors/runtimes/index.js`);
const { envInt, envString } = await import(`${root}/dist/nodes/common/env.js`);
const { connectNats, natsOptionsFromEnv } = await import(`${root}/dist/nodes/common/nats-connection.js`);
const { provisionRegion } = await import(`${root}/dist/nodes/launcher/provision.js`);
const { NAME_TOKEN } = await import(`${root}/dist/protocol/index.js`);

const env = process.env;
const logger = jsonLogger({ node: "provision" }, "info");
try {
  const region = envString(env, "VIGIL_REGION", "", NAME_TOKEN);
  const replicas = envInt(env, "VIGIL_REPLICAS", 1, 1, 5);
  const timeoutMs = envInt(env, "VIGIL_PROVISION_TIMEOUT_MS", 120000, 1000);
  // The connection retries forever (as every node does); a one-shot job must end instead.
  setTimeout(() => {
    logger.error("provisioning timed out", { region, timeoutMs });
    process.exit(1);
  }, timeoutMs).unref();
  const nc = await connectNats(natsOptionsFromEnv(env, `provision-${region}`), logger);
  await provisionRegion(nc, { region, replicas, placementCluster: region }, createBuiltinModels());
  await nc.close();
  logger.info("provisioned", { region, replicas });
} catch (err) {
  logger.error("provisioning failed", { err });
  process.exit(1);
}
'
