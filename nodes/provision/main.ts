/**
 * One-shot provisioning of a Vigil region (the container image's `provision` job): its request
 * and dead-letter streams, its task and actor buckets, and the shared model catalog, through the
 * same code `npm start` runs (`nodes/launcher/provision.ts`). Idempotent: run it at every
 * deployment, before the region's nodes start. Exits 0 when done, 1 on failure or timeout.
 *
 * Environment: `VIGIL_REGION` (required), `VIGIL_REPLICAS` (1 to 5; 3 on a three-node cluster),
 * `VIGIL_PROVISION_TIMEOUT_MS` (120 000), and the NATS connection variables every node reads
 * (`NATS_URL`, `NATS_NKEY`, `NATS_INBOX_PREFIX`, `NATS_CA`, ...), as the `admin` user.
 */
import { createBuiltinModels } from '../../actors/runtimes/index.js';
import { NAME_TOKEN } from '../../protocol/index.js';
import { envInt, envString } from '../common/env.js';
import { createLogger } from '../common/logger.js';
import { connectNats, natsOptionsFromEnv } from '../common/nats-connection.js';
import { provisionRegion } from '../launcher/provision.js';

const env = process.env;
const logger = createLogger({ node: 'provision' }, 'info');
try {
  const region = envString(env, 'VIGIL_REGION', '', NAME_TOKEN);
  if (!region) throw new Error('set VIGIL_REGION to the region to provision');
  const replicas = envInt(env, 'VIGIL_REPLICAS', 1, 1, 5);
  const timeoutMs = envInt(env, 'VIGIL_PROVISION_TIMEOUT_MS', 120_000, 1000);
  // The connection retries forever (as every node's does); a one-shot job must end instead.
  setTimeout(() => {
    logger.error({ region, timeoutMs }, 'provisioning timed out');
    process.exit(1);
  }, timeoutMs).unref();
  const nc = await connectNats(natsOptionsFromEnv(env, `provision-${region}`), logger);
  // Each region's streams and buckets live in the NATS cluster named after it, wherever the
  // connection lands (deploy/nats/hub.conf, deploy/k8s/nats).
  await provisionRegion(nc, { region, replicas, placementCluster: region }, createBuiltinModels());
  await nc.close();
  logger.info({ region, replicas }, 'provisioned');
} catch (err) {
  logger.error({ err }, 'provisioning failed');
  process.exit(1);
}
