/** The actor model: inference actors and their mailbox. Model runtimes live in `runtimes/`. */
export { createInferenceActor, INFERENCE_ACTOR_DEFAULTS } from './inference-actor.js';
export type { InferenceActor, InferenceActorOptions } from './inference-actor.js';
export type { ActorStats } from './actor-stats.js';
export type { ModelHandle } from './model-handle.js';
export { openMailbox } from './mailbox.js';
export type { Mailbox, MailboxOptions } from './mailbox.js';
