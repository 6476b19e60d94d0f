/**
 * The local edge's door (`npm start`): its configuration, real nats-server processes on loopback
 * ports (one server, regional clusters and supercluster, edge leaf nodes), per-role NATS
 * credentials, provisioning, and starting a node as a child process. Tests, the drill runner and
 * the bench build their topologies from the same parts.
 */
export { LAUNCHER_CONFIG, LOCAL_STATE_SETTINGS, readLauncherConfig } from './config.js';
export { accountsConfig, accountsIncludeLine, generateNatsCredentials } from './nats-accounts.js';
export type { NatsCredentials } from './nats-accounts.js';
export { freePort, startNatsServer } from './nats-server-process.js';
export type { NatsServerOptions, NatsServerProcess } from './nats-server-process.js';
export { NODE_V8_FLAGS, PROJECT_ROOT, startNode } from './node-process.js';
export type { NodeName, NodeProcess } from './node-process.js';
export {
  checkTopology,
  startEdgeServer,
  startSupercluster,
  waitForJetStreamMeta,
} from './supercluster.js';
export type { EdgeSiteSpec, RegionSpec, Supercluster } from './supercluster.js';
