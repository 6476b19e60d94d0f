/**
 * The actor host's door: starting a host in this process (tests, tools) with the options
 * `main.ts` otherwise builds from the environment. The launcher, the drill and the test harness
 * run the host as its own process (`main.ts`) and need nothing from here.
 */
export { startActorHost } from './host.js';
export type { ActorHost, ActorHostOptions } from './host.js';
export { BACKLOG_RESCUE_DEFAULTS } from './backlog-rescue.js';
export { ACTOR_HOST_CONFIG, actorHostOptionsFromEnv, DEFAULT_DRAIN_GRACE_MS } from './config.js';
