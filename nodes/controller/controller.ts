/**
 * The controller: observes every region, and while it holds the leader lease evaluates the alert
 * rules, raises and resolves alerts, and runs each firing's recovery action once (then not again
 * on the same subject within the rule's cooldown). Several controllers run; one acts.
 *
 * A firing alert is kept in the control bucket (`alert.<rule>.<subject>`) with when its action
 * last ran, so a controller that takes over neither fires it again nor repeats its action; it
 * resolves it when the condition no longer holds.
 *
 * This file is the wiring. The parts, in the order an evaluation uses them: `observe.ts` (what
 * NATS holds), `rule-evaluator.ts` (pending, firing, clearing), `firing-alerts.ts` (store,
 * announce, act, lift), `actions.ts` (the recovery actions), with `lease.ts` fencing them all.
 */
import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { assetNames, kvStreamName, newTaskId } from '../../protocol/index.js';
import {
  observeNatsConnection,
  observeServerStorage,
  observeStreamStorage,
  connectNats,
  type NatsConnectOptions,
} from '../common/index.js';
import { createActionRunner } from './actions.js';
import { createAlertSink, type WebhookOptions } from './alerts.js';
import { createFiringAlerts } from './firing-alerts.js';
import { startLeaderLease } from './lease.js';
import { startObserver, type Observer } from './observe.js';
import { createRuleEvaluator } from './rule-evaluator.js';
import type { AlertRule } from './rules.js';

/** Everything a controller needs to start. */
export interface ControllerOptions {
  /** Regions it watches and acts in. */
  regions: readonly string[];
  nats: NatsConnectOptions;
  rules: readonly AlertRule[];
  /** Leader lease, ms. Default {@link CONTROLLER_DEFAULTS.leaseMs}. */
  leaseMs?: number;
  /** How often the rules are evaluated, ms. Default {@link CONTROLLER_DEFAULTS.evalIntervalMs}. */
  evalIntervalMs?: number;
  webhook?: WebhookOptions;
  /** The `sys` user, for each nats-server's storage figures; absent: not reported. */
  sysNats?: NatsConnectOptions;
  logger: Logger;
}

/** Defaults of {@link ControllerOptions}. */
export const CONTROLLER_DEFAULTS = {
  leaseMs: 10_000,
  evalIntervalMs: 1_000,
} as const;

/** How long stopping waits for alerts still queued for the webhook, ms. */
const WEBHOOK_CLOSE_GRACE_MS = 2_000;

/** A running controller. */
export interface Controller {
  readonly controllerId: string;
  isLeader(): boolean;
  /** Gives up the lease, stops evaluating and disconnects. Idempotent. */
  stop(): Promise<void>;
}

/** The streams of a region whose storage the controller reports. */
function regionStreams(region: string): string[] {
  return [
    assetNames.requestStream(region),
    assetNames.deadLetterStream(region),
    kvStreamName(assetNames.taskBucket(region)),
  ];
}

/** Starts a controller; it competes for the lease at once. */
export async function startController(options: ControllerOptions): Promise<Controller> {
  const o = { ...CONTROLLER_DEFAULTS, ...options };
  const controllerId = `ctl-${newTaskId().slice(0, 10)}`;
  const logger = o.logger.child({ controllerId });
  const nc = await connectNats({ ...o.nats, name: o.nats.name || controllerId }, logger);
  let parts: ControllerParts;
  try {
    parts = await openControllerParts(nc, o, controllerId, logger);
  } catch (err) {
    await nc.close();
    throw err;
  }
  const { control, observer, sys } = parts;
  const actions = createActionRunner(nc, jetstream(nc), control, controllerId);
  const alerts = createAlertSink(nc, o.webhook, logger);
  // The lease reports a change only from its first step, after a round trip to NATS: by then the
  // evaluator below exists.
  const lease = startLeaderLease(control, {
    controllerId,
    leaseMs: o.leaseMs,
    logger,
    onChange: (leader) => evaluator.leadershipChanged(leader),
  });
  const firing = createFiringAlerts({ control, actions, alerts, lease, controllerId, logger });
  const evaluator = createRuleEvaluator({ rules: o.rules, regions: o.regions, firing, lease });
  // Standbys sample too, so a new leader judges "stuck for 60 s" from history it already has.
  const loop = startEvaluationLoop(
    async () => evaluator.evaluate(await observer.sample()),
    o.evalIntervalMs,
    logger,
  );

  let stopping: Promise<void> | undefined;
  return {
    controllerId,
    isLeader: () => lease.isLeader(),
    stop() {
      stopping ??= (async () => {
        await loop.stop();
        await lease.release();
        observer.close();
        await alerts.close(WEBHOOK_CLOSE_GRACE_MS);
        await sys?.close();
        await nc.drain();
      })();
      return stopping;
    },
  };
}

/** What a controller opens on its connection before it competes for the lease. */
interface ControllerParts {
  /** The control bucket: the lease, firing alerts, route overrides and rollout holds. */
  control: KV;
  observer: Observer;
  /** The `sys` user's connection, for each nats-server's storage figures. */
  sys?: NatsConnection;
}

/** Opens the control bucket and the observer, and starts the storage and connection metrics. */
async function openControllerParts(
  nc: NatsConnection,
  o: ControllerOptions,
  controllerId: string,
  logger: Logger,
): Promise<ControllerParts> {
  const js = jetstream(nc);
  const control = await new Kvm(nc).open(assetNames.controlBucket);
  const jsm = await js.jetstreamManager();
  const observer = await startObserver(nc, jsm, { regions: o.regions, logger });
  observeNatsConnection(nc, 'controller');
  observeStreamStorage(jsm, () => o.regions.flatMap(regionStreams));
  if (!o.sysNats) return { control, observer };
  const sys = await connectNats({ ...o.sysNats, name: `${controllerId}-sys` }, logger);
  try {
    observeServerStorage(sys);
  } catch (err) {
    await sys.close();
    throw err;
  }
  return { control, observer, sys };
}

/** A loop that can be stopped, waiting for the run in progress. */
interface EvaluationLoop {
  stop(): Promise<void>;
}

/** Runs `evaluate` now and then `intervalMs` after each run ends; a failed run is logged. */
function startEvaluationLoop(
  evaluate: () => Promise<void>,
  intervalMs: number,
  logger: Logger,
): EvaluationLoop {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let evaluating: Promise<void> = Promise.resolve();
  const loop = (): void => {
    if (stopped) return;
    evaluating = evaluate()
      .catch((err: unknown) => logger.warn({ err }, 'evaluation failed'))
      .finally(() => {
        if (!stopped) timer = setTimeout(loop, intervalMs);
      });
  };
  loop();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await evaluating;
    },
  };
}
