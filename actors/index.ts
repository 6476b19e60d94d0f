/**
 * The actor model's one door for everything outside `actors/`: inference actors and their
 * mailbox, the model handle and the supervisor it runs under, heartbeats, the circuit breaker,
 * the executors that isolate model code and the built-in model runtimes.
 *
 * A task's path through the folder, in reading order: `inference-actor.ts` (the actor, its
 * wiring, and what the breaker and a drain do to the mailbox) -> `mailbox.ts` (the pull consumer)
 * -> `task-delivery.ts` (one delivery, judged) -> `attempt.ts` (one run of the model) ->
 * `task-records.ts` (the compare-and-set final record) -> `replies.ts` (the reply and events).
 * Failures end in `dead-letters.ts`; requests for a model no actor serves are ended by
 * `unserved-requests.ts`; each other file is named for the part it holds.
 */
export { createInferenceActor, INFERENCE_ACTOR_DEFAULTS } from './inference-actor.js';
export type { InferenceActor, InferenceActorOptions } from './inference-actor.js';
export type { ActorStats } from './actor-stats.js';
export { openMailbox } from './mailbox.js';
export type { Mailbox, MailboxOptions } from './mailbox.js';

export { superviseModel } from './model-handle.js';
export type { ModelHandle, SupervisedModel } from './model-handle.js';
export { ChildUnavailableError, createSupervisor } from './supervisor.js';
export type {
  Escalation,
  SupervisedChild,
  SupervisedHandle,
  Supervisor,
  SupervisorEvent,
  SupervisorOptions,
} from './supervisor.js';

export { startUnservedRequestSweep, UNSERVED_REQUESTS_DEFAULTS } from './unserved-requests.js';
export type { UnservedRequestSweep, UnservedRequestsOptions } from './unserved-requests.js';

export { createHeartbeats } from './heartbeats.js';
export type { Heartbeats, HeartbeatsOptions } from './heartbeats.js';
export { CIRCUIT_BREAKER_DEFAULTS, createCircuitBreaker } from './circuit-breaker.js';
export type { CircuitBreaker, CircuitBreakerOptions } from './circuit-breaker.js';

export {
  createExecutorStarter,
  ExecutorBusyError,
  ExecutorGoneError,
  ExecutorStartError,
  Isolation,
  startExecutor,
} from './executors/index.js';
export type {
  ExecutorSpec,
  ExecutorStarter,
  ModelExecutor,
  RunOptions,
  StartExecutorOptions,
} from './executors/index.js';

export {
  builtinOutputCheck,
  checkChatOutput,
  checkEchoOutput,
  checkEmbeddingOutput,
  createBuiltinModels,
  createEchoModel,
  createHashEmbeddingModel,
  createNgramChatModel,
  MIN_CHAT_TOKENS_BEFORE_STOP,
} from './runtimes/index.js';
export type { BuiltinModelsOptions, ModelRunContext, ModelRuntime } from './runtimes/index.js';
