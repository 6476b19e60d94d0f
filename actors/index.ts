/** The actor model: inference actors and their mailbox. Model runtimes live in `runtimes/`. */
export { createInferenceActor, INFERENCE_ACTOR_DEFAULTS } from './inference-actor.js';
export type { ActorStats, InferenceActor, InferenceActorOptions } from './inference-actor.js';
export { openMailbox } from './mailbox.js';
export type { Mailbox, MailboxOptions } from './mailbox.js';
