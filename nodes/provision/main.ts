/**
 * One-shot provisioning of a Vigil region (the container image's `provision` job): its request
 * and dead-letter streams, its task and actor buckets, and the shared model catalog, through the
 * same code `npm start` runs (`nodes/launcher/provision.ts`). Idempotent: run it at every
 * deployment, before the region's nodes start. Exits 0 when done, 1 on failure or timeout. What it
 * reads: `config.ts` (`--help` lists it).
 */
import { createBuiltinModels } from '../../actors/index.js';
import { connectNats, natsConnectOptions, startUp } from '../common/index.js';
import { provisionRegion } from './provision.js';
import { PROVISION_CONFIG } from './config.js';

const { settings, logger } = startUp(PROVISION_CONFIG, process.argv.slice(2), process.env);
const { region, replicas, timeoutMs } = settings.provision;
try {
  // The connection retries forever (as every node's does); a one-shot job must end instead.
  setTimeout(() => {
    logger.error({ region, timeoutMs }, 'provisioning timed out');
    process.exit(1);
  }, timeoutMs).unref();
  const nc = await connectNats(natsConnectOptions(settings.nats, `provision-${region}`), logger);
  // Each region's streams and buckets live in the NATS cluster named after it, wherever the
  // connection lands (deploy/nats/hub.conf, deploy/k8s/nats).
  await provisionRegion(nc, { region, replicas, placementCluster: region }, createBuiltinModels());
  await nc.close();
  logger.info({ region, replicas }, 'provisioned');
} catch (err) {
  logger.error({ err }, 'provisioning failed');
  process.exit(1);
}
