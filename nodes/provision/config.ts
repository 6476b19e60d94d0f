/** The provisioning job's configuration: what it reads, declared once. */
import {
  durationMs,
  int,
  name,
  nodeConfig,
  settingsGroup,
  LOG_SETTINGS,
  NATS_SETTINGS,
} from '../common/index.js';

/** What provisioning itself reads. */
export const PROVISION_SETTINGS = settingsGroup({
  id: 'provision-settings',
  title: 'Provisioning',
  settings: {
    region: name({
      name: 'VIGIL_REGION',
      required: true,
      meaning: 'The region to provision.',
    }),
    replicas: int({
      name: 'VIGIL_REPLICAS',
      min: 1,
      max: 5,
      default: 1,
      meaning: "Replicas of the region's streams and buckets: 3 on a three-node cluster.",
    }),
    timeoutMs: durationMs({
      name: 'VIGIL_PROVISION_TIMEOUT_MS',
      min: 1000,
      default: 120_000,
      meaning: 'Gives up (exit 1) when provisioning has not finished in this time.',
    }),
  },
});

/** Everything provisioning reads. */
export const PROVISION_CONFIG = nodeConfig({
  node: 'provision',
  title: 'Provisioning job',
  usage: 'node dist/nodes/provision/main.js [--help]',
  summary:
    "Creates or updates one region's streams and buckets and the shared model catalog, then " +
    'exits 0; idempotent, so it runs at every deployment before the nodes. Connect as the ' +
    '`admin` user. The image runs it through `deploy/containers/provision-region.sh`.',
  groups: { provision: PROVISION_SETTINGS, log: LOG_SETTINGS, nats: NATS_SETTINGS },
});
