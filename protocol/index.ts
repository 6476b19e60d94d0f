/**
 * Vigil's wire contract: subjects, headers, envelopes, the codec, error codes, JetStream asset
 * definitions and the typed client. Imported by actors and nodes; imports neither.
 */
export { decode, DEFAULT_DECODE_LIMITS, encode, scanMsgpack } from './codec.js';
export type { DecodeLimits } from './codec.js';
export {
  ErrorCode,
  PayloadError,
  RetryableError,
  TerminalError,
  toVigilError,
  ValidationError,
  VigilError,
} from './errors.js';
export type { VigilErrorOptions, WireError } from './errors.js';
export { Header } from './headers.js';
export {
  MESSAGING_SYSTEM_NATS,
  MessagingAttr,
  natsHeaderGetter,
  natsHeaderSetter,
} from './trace-context.js';
export type { TraceCarrier } from './trace-context.js';
export {
  isNameToken,
  NAME_TOKEN,
  nameToken,
  parseRequestSubject,
  Priority,
  subjects,
  TASK_ID,
} from './subjects.js';
export type { RequestSubject } from './subjects.js';
export {
  actorHeartbeatSchema,
  ActorState,
  BreakerState,
  cancelRequestSchema,
  CancelReason,
  deadLetterSchema,
  decodeAs,
  ENVELOPE_VERSION,
  FINAL_STATES,
  modelDeploymentSchema,
  newTaskId,
  plannedTaskId,
  requestEnvelopeSchema,
  taskIdForIdempotencyKey,
  taskEventSchema,
  MAX_EVENT_TEXT_CHARS,
  TaskEventType,
  taskRecordSchema,
  TaskState,
  validate,
  wireError,
} from './envelopes.js';
export type {
  ActorHeartbeat,
  CancelRequest,
  DeadLetter,
  ModelDeployment,
  RequestEnvelope,
  TaskEvent,
  TaskRecord,
} from './envelopes.js';
export {
  assetNames,
  deadLetterStreamConfig,
  eventStreamConfig,
  eventRetentionOf,
  eventTtl,
  MAX_EVENT_BYTES,
  edgeDomain,
  EDGE_SITE_DEFAULTS,
  edgeSourceConfig,
  edgeStreamConfig,
  ensureEdgeSite,
  ensureModelConsumer,
  ensureRegionAssets,
  ensureStream,
  HUB_DOMAIN,
  HEARTBEAT_EXPIRY_INTERVALS,
  MODEL_CONSUMER_DEFAULTS,
  modelConsumerConfig,
  REGION_ASSET_DEFAULTS,
  requestStreamConfig,
} from './definitions.js';
export type { EdgeSiteOptions, ModelConsumerOptions, RegionAssetsOptions } from './definitions.js';
export { createVigilClient, PublishRefusedError, VIGIL_CLIENT_DEFAULTS } from './client.js';
export type {
  Cancellation,
  SubmitRequest,
  Submission,
  TaskStatus,
  VigilClient,
  VigilClientOptions,
} from './client.js';
export {
  createDeadLetterAdmin,
  DEAD_LETTER_HEADERS,
  DEFAULT_DEAD_LETTER_LIST_LIMIT,
  MAX_DEAD_LETTER_LIST_LIMIT,
} from './dead-letters.js';
export type {
  DeadLetterAdmin,
  DeadLetterAdminOptions,
  DeadLetterDetail,
  DeadLetterQuery,
  DeadLetterReplay,
  DeadLetterSummary,
} from './dead-letters.js';
export {
  ConnectionType,
  inboxPrefixOf,
  jsApi,
  kvStreamName,
  NatsAccount,
  Role,
  SERVICE_DISCOVERY,
  userName,
  vigilUsers,
} from './permissions.js';
export type { SubjectRules, UserPermissions, VigilUser } from './permissions.js';
export {
  HEALTH_REFRESH_MIN_MS,
  HEALTH_WATCH_RETRY_MS,
  isHeartbeatFresh,
  isHeartbeatHealthy,
  watchActorHealth,
} from './actor-health.js';
export type { ActorHealth, WarningSink } from './actor-health.js';
export { HostCommandName, hostCommandReplySchema, hostCommandSchema } from './control-plane.js';
export type { HostCommand, HostCommandReply } from './control-plane.js';
export {
  chatChoices,
  chatChoiceSchema,
  chatOutputSchema,
  embeddingOutputSchema,
  ModelKind,
} from './model-outputs.js';
export type { ChatChoice, ChatOutput, EmbeddingOutput } from './model-outputs.js';
export {
  chatContentSchema,
  chatMessageSchema,
  chatMessagesInputSchema,
  chatParamsSchema,
  checkModelInput,
  embeddingBatchSchema,
  embeddingDimensionsSchema,
  embeddingParamsSchema,
  embeddingTextSchema,
  MAX_CHAT_CONTENT_CHARS,
  MAX_CHAT_CHOICES,
  MAX_CHAT_MAX_TOKENS,
  MAX_CHAT_MESSAGES,
  MAX_CHAT_TEMPERATURE,
  MAX_EMBEDDING_DIMENSIONS,
  MAX_EMBEDDING_INPUT_CHARS,
  MAX_EMBEDDING_INPUTS,
  MIN_EMBEDDING_DIMENSIONS,
  parseChatInput,
  parseChatParams,
  parseEmbeddingInput,
  parseEmbeddingParams,
} from './model-inputs.js';
export type { ChatMessage, ChatParams, EmbeddingParams } from './model-inputs.js';
export { isRevisionConflict } from './kv-conflicts.js';
export {
  checkRequestSize,
  checkTaskFields,
  HEADER_ALLOWANCE_BYTES,
  requestByteLimit,
  WIRE_LIMITS,
} from './limits.js';
export type { WireLimits } from './limits.js';
export { recoverRequest } from './unreadable-requests.js';
export type { RecoveredRequest } from './unreadable-requests.js';
export { openTaskEventFeed } from './task-event-feed.js';
export type { SequencedEvent, TaskEventFeed, TaskEventFeedOptions } from './task-event-feed.js';
export {
  checkCapabilities,
  modelCapabilitiesSchema,
  NO_CAPABILITIES,
  OPTIONAL_FIELDS,
} from './capabilities.js';
export type { ModelCapabilities, OptionalField } from './capabilities.js';
