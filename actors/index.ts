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
export { CIRCUIT_BREAKER_DEFAULTS, createCircuitBreaker } from './circuit-breaker.js';
export type { CircuitBreaker, CircuitBreakerOptions } from './circuit-breaker.js';
export { ChildUnavailableError, createSupervisor } from './supervisor.js';
export type {
  Escalation,
  SupervisedChild,
  SupervisedHandle,
  Supervisor,
  SupervisorEvent,
  SupervisorOptions,
} from './supervisor.js';
export { Isolation } from './executors/index.js';
export type { ExecutorSpec } from './executors/index.js';
