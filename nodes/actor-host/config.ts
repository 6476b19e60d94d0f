/** The actor host's configuration, read once from the environment at start-up. */
import { z } from 'zod';
import { INFERENCE_ACTOR_DEFAULTS } from '../../actors/index.js';
import { Isolation, type ExecutorSpec } from '../../actors/executors/index.js';
import type { SupervisorOptions } from '../../actors/supervisor.js';
import type { Logger } from 'pino';
import { createBuiltinModels, type BuiltinModelsOptions } from '../../actors/runtimes/index.js';
import { NAME_TOKEN, REGION_ASSET_DEFAULTS, validate } from '../../protocol/index.js';
import { ConfigError, envInt, envJson, envList, envString } from '../common/env.js';
import { natsOptionsFromEnv } from '../common/nats-connection.js';
import type { ActorHostOptions } from './host.js';
import { BACKLOG_RESCUE_DEFAULTS } from './backlog-rescue.js';

const isolationSchema = z.enum([
  Isolation.WorkerThread,
  Isolation.ChildProcess,
  Isolation.InProcess,
]);

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

/**
 * Reads:
 * - `VIGIL_REGION` (default `local`), `NATS_URL`, `NATS_USER`, `NATS_PASSWORD`, `NATS_TOKEN`
 * - `VIGIL_MODELS`: comma-separated built-in models to serve (default: all)
 * - `VIGIL_CONCURRENCY` (4), `VIGIL_MAX_ATTEMPTS` (5), `VIGIL_RETRY_SCHEDULE_MS` (`1000,5000,15000,30000`),
 *   `VIGIL_ACK_WAIT_MS` (30 000), `VIGIL_HEARTBEAT_MS` (10 000; the actors bucket expires beats
 *   after three intervals, set at provisioning)
 * - `VIGIL_ISOLATION`: where models run: `worker-thread` (default), `child-process`, `in-process`;
 *   `VIGIL_MODEL_ISOLATION`: per model, JSON `{"echo":"child-process"}`; `VIGIL_MODEL_MEMORY_MB`
 *   (512): heap limit of each model's executor; `VIGIL_EXECUTOR_SPARES` (0 or 1): executors kept
 *   booted ahead of a crash
 * - `VIGIL_RESTART`: JSON supervision settings
 *   `{"maxRestarts":5,"withinMs":60000,"initialMs":50,"maxMs":5000,"pingIntervalMs":1000,"pingTimeoutMs":3000}`
 * - `VIGIL_RESCUE_REGIONS` (`us,ap`: other regions whose queue this host takes over when they have
 *   had no healthy actor for a model it serves for `VIGIL_RESCUE_GRACE_MS` (60 000), looking every
 *   `VIGIL_RESCUE_CHECK_MS` (5 000); default none)
 * - `VIGIL_EXECUTOR_TEST_HOOKS=1`: lets chaos tests crash or hang an executor through task params
 * - `VIGIL_BREAKER`: JSON circuit-breaker settings
 *   `{"windowMs":30000,"minCalls":10,"failureRatio":0.5,"cooldownMs":10000,"probes":2}`
 * - `VIGIL_ECHO_FAULTS`: JSON `{"enabled":true,"failureRate":0.5,"delayMs":0,"maxDelayMs":60000}`;
 *   fault injection is off unless the operator sets this.
 * @throws ConfigError naming the first bad variable.
 */
export function actorHostOptionsFromEnv(env: NodeJS.ProcessEnv, logger: Logger): ActorHostOptions {
  const breaker = envJson(env, 'VIGIL_BREAKER');
  const builtin: BuiltinModelsOptions = {};
  const faults = envJson(env, 'VIGIL_ECHO_FAULTS');
  if (faults !== undefined)
    builtin.echo = { faults: validate(echoFaultsSchema, faults, 'VIGIL_ECHO_FAULTS') };
  const all = createBuiltinModels(builtin);
  const wanted = envString(env, 'VIGIL_MODELS', all.map((m) => m.name).join(','))
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  for (const name of wanted) {
    if (!all.some((m) => m.name === name)) {
      throw new ConfigError(
        `VIGIL_MODELS names '${name}'; built-in models are ${all.map((m) => m.name).join(', ')}`,
      );
    }
  }
  const isolation = validate(
    isolationSchema,
    envString(env, 'VIGIL_ISOLATION', Isolation.WorkerThread),
    'VIGIL_ISOLATION',
  );
  const perModel = validate(
    z.record(z.string(), isolationSchema),
    envJson(env, 'VIGIL_MODEL_ISOLATION') ?? {},
    'VIGIL_MODEL_ISOLATION',
  );
  const testHooks = env['VIGIL_EXECUTOR_TEST_HOOKS'] === '1';
  const memoryLimitMb = envInt(env, 'VIGIL_MODEL_MEMORY_MB', 512, 32, 65536);
  const executors: ExecutorSpec[] = wanted.map((model) => ({
    isolation: perModel[model] ?? isolation,
    model,
    models: builtin,
    memoryLimitMb,
    ...(testHooks ? { testHooks } : {}),
  }));
  const restart = validate(restartSchema, envJson(env, 'VIGIL_RESTART') ?? {}, 'VIGIL_RESTART');
  const supervision: SupervisorOptions = {
    backoff: { initialMs: restart.initialMs, maxMs: restart.maxMs },
    intensity: { maxRestarts: restart.maxRestarts, withinMs: restart.withinMs },
    liveness: { pingIntervalMs: restart.pingIntervalMs, pingTimeoutMs: restart.pingTimeoutMs },
  };
  const schedule = envString(
    env,
    'VIGIL_RETRY_SCHEDULE_MS',
    INFERENCE_ACTOR_DEFAULTS.retryScheduleMs.join(','),
    /^\d+(,\d+)*$/,
  )
    .split(',')
    .map(Number);
  const region = envString(env, 'VIGIL_REGION', 'local', NAME_TOKEN);
  return {
    region,
    nats: natsOptionsFromEnv(env, ''),
    executors,
    supervision,
    spares: envInt(env, 'VIGIL_EXECUTOR_SPARES', 0, 0, 1) as 0 | 1,
    concurrency: envInt(env, 'VIGIL_CONCURRENCY', INFERENCE_ACTOR_DEFAULTS.concurrency, 1, 1024),
    maxAttempts: envInt(env, 'VIGIL_MAX_ATTEMPTS', INFERENCE_ACTOR_DEFAULTS.maxAttempts, 1, 100),
    retryScheduleMs: schedule,
    ackWaitMs: envInt(env, 'VIGIL_ACK_WAIT_MS', INFERENCE_ACTOR_DEFAULTS.ackWaitMs, 1000, 3600_000),
    heartbeatIntervalMs: envInt(
      env,
      'VIGIL_HEARTBEAT_MS',
      REGION_ASSET_DEFAULTS.heartbeatIntervalMs,
      100,
      3600_000,
    ),
    ...(breaker === undefined
      ? {}
      : { breaker: validate(breakerSchema, breaker, 'VIGIL_BREAKER') }),
    rescue: {
      regions: envList(env, 'VIGIL_RESCUE_REGIONS', NAME_TOKEN).filter((r) => r !== region),
      graceMs: envInt(env, 'VIGIL_RESCUE_GRACE_MS', BACKLOG_RESCUE_DEFAULTS.graceMs, 0, 86_400_000),
      checkIntervalMs: envInt(
        env,
        'VIGIL_RESCUE_CHECK_MS',
        BACKLOG_RESCUE_DEFAULTS.checkIntervalMs,
        100,
        3_600_000,
      ),
    },
    logger,
  };
}
