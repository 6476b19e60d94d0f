/** The actor model: inference actors and their mailbox. Model runtimes live in `runtimes/`. */
export { createInferenceActor, INFERENCE_ACTOR_DEFAULTS } from './inference-actor.js';
export type { InferenceActor, InferenceActorOptions } from './inference-actor.js';
export type { ActorStats } from './actor-stats.js';
export { superviseModel } from './model-handle.js';
export type { ModelHandle, SupervisedModel } from './model-handle.js';
export { createHeartbeats } from './heartbeats.js';
export type { Heartbeats, HeartbeatsOptions } from './heartbeats.js';
export { openMailbox } from './mailbox.js';
export type { Mailbox, MailboxOptions } from './mailbox.js';
