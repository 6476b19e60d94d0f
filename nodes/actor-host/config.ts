/** The actor host's configuration: what it reads, declared once, and the options built from it. */
import { z } from 'zod';
import {
  INFERENCE_ACTOR_DEFAULTS,
  Isolation,
  type ExecutorSpec,
  createBuiltinModels,
  type BuiltinModelsOptions,
  UNSERVED_REQUESTS_DEFAULTS,
} from '../../actors/index.js';
import type { SupervisorOptions } from '../../actors/index.js';
import type { Logger } from 'pino';
import { REGION_ASSET_DEFAULTS } from '../../protocol/index.js';
import {
  DURATION_MS_ITEM,
  durationMs,
  flag,
  int,
  json,
  list,
  name,
  names,
  nodeConfig,
  oneOf,
  parseConfig,
  settingsGroup,
  type ConfigValues,
  type Env,
  LOG_SETTINGS,
  NATS_SETTINGS,
  natsConnectOptions,
  TELEMETRY_SETTINGS,
} from '../common/index.js';
import type { ActorHostOptions } from './host.js';
import { BACKLOG_RESCUE_DEFAULTS } from './backlog-rescue.js';

const ISOLATIONS = [Isolation.WorkerThread, Isolation.ChildProcess, Isolation.InProcess] as const;

const restartSchema = z.object({
  maxRestarts: z.number().int().nonnegative().optional(),
  withinMs: z.number().int().positive().optional(),
  initialMs: z.number().int().nonnegative().optional(),
  maxMs: z.number().int().positive().optional(),
  pingIntervalMs: z.number().int().positive().optional(),
  pingTimeoutMs: z.number().int().positive().optional(),
});

const breakerSchema = z.object({
  windowMs: z.number().int().positive().optional(),
  minCalls: z.number().int().positive().optional(),
  failureRatio: z.number().gt(0).max(1).optional(),
  cooldownMs: z.number().int().positive().optional(),
  probes: z.number().int().positive().optional(),
});

const echoFaultsSchema = z.object({
  enabled: z.boolean(),
  failureRate: z.number().min(0).max(1).optional(),
  delayMs: z.number().int().min(0).optional(),
  maxDelayMs: z.number().int().min(0).optional(),
});

/** How long the host drains on SIGTERM by default, ms. */
export const DEFAULT_DRAIN_GRACE_MS = 30_000;

let builtinNames: readonly string[] | undefined;

/** The built-in models' names (made once: the chat model trains when it is made). */
function builtinModelNames(): readonly string[] {
  builtinNames ??= createBuiltinModels().map((model) => model.name);
  return builtinNames;
}

/** What the actor host itself reads. */
export const ACTOR_HOST_SETTINGS = settingsGroup({
  id: 'actor-host-settings',
  title: 'Actor host',
  settings: {
    region: name({
      name: 'VIGIL_REGION',
      default: 'local',
      meaning: "The region whose request queue this host's actors work off.",
    }),
    models: names({
      name: 'VIGIL_MODELS',
      defaultText: 'every built-in model',
      meaning: 'The built-in models to serve (`echo`, `ngram-chat`, `hash-embed`), one actor each.',
    }),
    concurrency: int({
      name: 'VIGIL_CONCURRENCY',
      min: 1,
      max: 1024,
      default: INFERENCE_ACTOR_DEFAULTS.concurrency,
      meaning: 'Tasks each actor runs at once (and pulls ahead: the prefetch).',
    }),
    maxAttempts: int({
      name: 'VIGIL_MAX_ATTEMPTS',
      min: 1,
      max: 100,
      default: INFERENCE_ACTOR_DEFAULTS.maxAttempts,
      meaning: 'Attempts of a task before a retryable failure is dead-lettered.',
    }),
    retryScheduleMs: list({
      name: 'VIGIL_RETRY_SCHEDULE_MS',
      item: DURATION_MS_ITEM,
      items: 'whole milliseconds',
      default: INFERENCE_ACTOR_DEFAULTS.retryScheduleMs,
      meaning: 'Backoff before each retry, ms; the last entry repeats.',
    }),
    ackWaitMs: durationMs({
      name: 'VIGIL_ACK_WAIT_MS',
      min: 1000,
      max: 3_600_000,
      default: INFERENCE_ACTOR_DEFAULTS.ackWaitMs,
      meaning:
        "The model consumers' ack wait: a delivery not acknowledged (nor marked in progress) " +
        'within it is delivered again.',
    }),
    heartbeatMs: durationMs({
      name: 'VIGIL_HEARTBEAT_MS',
      min: 100,
      max: 3_600_000,
      default: REGION_ASSET_DEFAULTS.heartbeatIntervalMs,
      meaning:
        'Heartbeat interval. The actors bucket forgets a heartbeat after three intervals of the ' +
        'value set at provisioning, so change both together.',
    }),
    isolation: oneOf({
      name: 'VIGIL_ISOLATION',
      values: ISOLATIONS,
      default: Isolation.WorkerThread,
      meaning:
        'Where models run: a worker thread with its own heap limit, a child process per model ' +
        '(survives native crashes), or in the host process (tests only).',
    }),
    modelIsolation: json({
      name: 'VIGIL_MODEL_ISOLATION',
      schema: z.record(z.string(), z.enum(ISOLATIONS)),
      example: '{"echo":"child-process"}',
      default: {},
      meaning: '`VIGIL_ISOLATION` per model.',
    }),
    memoryLimitMb: int({
      name: 'VIGIL_MODEL_MEMORY_MB',
      unit: 'MiB',
      min: 32,
      max: 65_536,
      default: 512,
      meaning: "Heap limit of each model's worker thread or child process.",
    }),
    spares: int({
      name: 'VIGIL_EXECUTOR_SPARES',
      min: 0,
      max: 1,
      default: 0,
      meaning: 'Executors kept booted per model ahead of a crash, so a restart takes no boot.',
    }),
    restart: json({
      name: 'VIGIL_RESTART',
      schema: restartSchema,
      example:
        '{"maxRestarts":5,"withinMs":60000,"initialMs":50,"maxMs":5000,"pingIntervalMs":1000,' +
        '"pingTimeoutMs":3000}',
      default: {},
      defaultText: 'as in the example',
      meaning:
        'Supervision, every field optional: more than `maxRestarts` restarts in `withinMs` ' +
        'escalate (the host exits 70); an executor is started again no sooner than `initialMs` ' +
        'after its last start, doubling to `maxMs` while it keeps dying (one that was up longer ' +
        'restarts at once); ' +
        'liveness pings every `pingIntervalMs` must be answered within `pingTimeoutMs`.',
    }),
    breaker: json({
      name: 'VIGIL_BREAKER',
      schema: breakerSchema,
      example: '{"windowMs":30000,"minCalls":10,"failureRatio":0.5,"cooldownMs":10000,"probes":2}',
      defaultText: 'as in the example',
      meaning:
        "Each actor's circuit breaker, every field optional: at least `minCalls` outcomes " +
        'with `failureRatio` failures in `windowMs` open it; after `cooldownMs` it lets ' +
        '`probes` tasks through.',
    }),
    echoFaults: json({
      name: 'VIGIL_ECHO_FAULTS',
      schema: echoFaultsSchema,
      example: '{"enabled":true,"failureRate":0.5,"delayMs":0,"maxDelayMs":60000}',
      meaning:
        "Fault injection in the `echo` model (drills, tests): tasks' params may then ask it to " +
        'fail or wait. Off unless set.',
    }),
    chatTokenIntervalMs: durationMs({
      name: 'VIGIL_CHAT_TOKEN_INTERVAL_MS',
      min: 0,
      max: 10_000,
      default: 0,
      meaning:
        'Paces `ngram-chat`: at least this long between tokens, as a served LLM decodes at tens ' +
        'of tokens per second (demos, tests and benches of streams). 0: as fast as it computes.',
    }),
    testHooks: flag({
      name: 'VIGIL_EXECUTOR_TEST_HOOKS',
      default: false,
      meaning:
        'Tests only: task params may crash, hang or exhaust the memory of an executor. Never in ' +
        'production.',
    }),
    rescueRegions: names({
      name: 'VIGIL_RESCUE_REGIONS',
      default: [],
      defaultText: 'none',
      meaning:
        'Other regions whose queues this host works off while they have had no healthy actor for a model it serves (`us,ap`).',
    }),
    rescueGraceMs: durationMs({
      name: 'VIGIL_RESCUE_GRACE_MS',
      min: 0,
      max: 86_400_000,
      default: BACKLOG_RESCUE_DEFAULTS.graceMs,
      meaning: 'How long a region must have had no healthy actor for a model before it is rescued.',
    }),
    rescueCheckMs: durationMs({
      name: 'VIGIL_RESCUE_CHECK_MS',
      min: 100,
      max: 3_600_000,
      default: BACKLOG_RESCUE_DEFAULTS.checkIntervalMs,
      meaning: 'How often the other regions are looked at.',
    }),
    unservedGraceMs: durationMs({
      name: 'VIGIL_UNSERVED_GRACE_MS',
      min: 0,
      max: 86_400_000,
      default: UNSERVED_REQUESTS_DEFAULTS.graceMs,
      meaning:
        "How long a request for a model that has no consumer in this host's region (no actor " +
        'here has ever served it) may wait for one; then it ends `failed` (`not_found`). Keep ' +
        "it longer than a new model's first actor host takes to start.",
    }),
    unservedCheckMs: durationMs({
      name: 'VIGIL_UNSERVED_CHECK_MS',
      min: 100,
      max: 3_600_000,
      default: UNSERVED_REQUESTS_DEFAULTS.checkIntervalMs,
      meaning:
        "How often the region's request stream is checked for requests no consumer takes (two " +
        'JetStream reads while there are none).',
    }),
    drainGraceMs: durationMs({
      name: 'VIGIL_DRAIN_GRACE_MS',
      min: 0,
      max: 3_600_000,
      default: DEFAULT_DRAIN_GRACE_MS,
      meaning:
        'On SIGTERM, how long in-flight tasks may finish before they are aborted and handed ' +
        'back; the host then exits 0.',
    }),
  },
  rules: [
    {
      text: '`VIGIL_MODELS` names only built-in models.',
      variables: ['VIGIL_MODELS'],
      check: ({ models }) => {
        const known = models === undefined ? [] : builtinModelNames();
        const unknown = models?.find((model) => !known.includes(model));
        return unknown === undefined
          ? undefined
          : `VIGIL_MODELS names '${unknown}'; built-in models are ${known.join(', ')}`;
      },
    },
  ],
});

/** Everything the actor host reads. */
export const ACTOR_HOST_CONFIG = nodeConfig({
  node: 'actor-host',
  title: 'Actor host',
  usage: 'node dist/nodes/actor-host/main.js [--help]',
  summary:
    "Runs the inference actors: pulls tasks from its region's model consumers, runs each model " +
    'in a supervised executor, stores the outcome and replies. Drains on SIGTERM; exits 70 when ' +
    'a model restarts past the restart intensity.',
  groups: {
    host: ACTOR_HOST_SETTINGS,
    log: LOG_SETTINGS,
    nats: NATS_SETTINGS,
    telemetry: TELEMETRY_SETTINGS,
  },
});

/** The actor host's parsed configuration. */
export type ActorHostSettings = ConfigValues<(typeof ACTOR_HOST_CONFIG)['groups']>;

/** The actor host's options from its parsed configuration. */
export function actorHostOptions(settings: ActorHostSettings, logger: Logger): ActorHostOptions {
  const { host: h } = settings;
  const builtin: BuiltinModelsOptions = {
    ...(h.echoFaults === undefined ? {} : { echo: { faults: h.echoFaults } }),
    ...(h.chatTokenIntervalMs > 0 ? { chat: { tokenIntervalMs: h.chatTokenIntervalMs } } : {}),
  };
  const executors: ExecutorSpec[] = (h.models ?? builtinModelNames()).map((model) => ({
    isolation: h.modelIsolation[model] ?? h.isolation,
    model,
    models: builtin,
    memoryLimitMb: h.memoryLimitMb,
    ...(h.testHooks ? { testHooks: true } : {}),
  }));
  const supervision: SupervisorOptions = {
    backoff: { initialMs: h.restart.initialMs, maxMs: h.restart.maxMs },
    intensity: { maxRestarts: h.restart.maxRestarts, withinMs: h.restart.withinMs },
    liveness: {
      pingIntervalMs: h.restart.pingIntervalMs,
      pingTimeoutMs: h.restart.pingTimeoutMs,
    },
  };
  return {
    region: h.region,
    nats: natsConnectOptions(settings.nats, ''),
    executors,
    supervision,
    spares: h.spares as 0 | 1,
    concurrency: h.concurrency,
    maxAttempts: h.maxAttempts,
    retryScheduleMs: h.retryScheduleMs,
    ackWaitMs: h.ackWaitMs,
    heartbeatIntervalMs: h.heartbeatMs,
    ...(h.breaker === undefined ? {} : { breaker: h.breaker }),
    rescue: {
      regions: h.rescueRegions.filter((r) => r !== h.region),
      graceMs: h.rescueGraceMs,
      checkIntervalMs: h.rescueCheckMs,
    },
    unserved: { graceMs: h.unservedGraceMs, checkIntervalMs: h.unservedCheckMs },
    logger,
  };
}

/**
 * The actor host's options from `env` (tests; `main.ts` goes through `startUp`).
 * @throws ConfigError naming every bad variable.
 */
export function actorHostOptionsFromEnv(env: Env, logger: Logger): ActorHostOptions {
  return actorHostOptions(parseConfig(ACTOR_HOST_CONFIG, env), logger);
}
