/**
 * Provisioning's door: a region's streams and buckets and the built-in models' catalog entries
 * (`provisionRegion`, run by the launcher, the drill, tests and the bench), and the container
 * job's configuration.
 */
export { PROVISION_CONFIG } from './config.js';
export { provisionRegion } from './provision.js';
