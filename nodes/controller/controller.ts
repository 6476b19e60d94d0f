/**
 * The controller: observes every region, and while it holds the leader lease evaluates the alert
 * rules, raises and resolves alerts, and runs each firing's recovery action once (then not again
 * on the same subject within the rule's cooldown). Several controllers run; one acts.
 *
 * A firing alert is kept in the control bucket (`alert.<rule>.<subject>`) with when its action
 * last ran, so a controller that takes over neither fires it again nor repeats its action; it
 * resolves it when the condition no longer holds.
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
} from '../common/metrics.js';
import { connectNats, type NatsConnectOptions } from '../common/nats-connection.js';
import { createActionRunner, isReversible, type ActionRecord } from './actions.js';
import { createAlertSink, type AlertEvent, type WebhookOptions } from './alerts.js';
import { startLeaderLease } from './lease.js';
import { startObserver, unreadRegions, type Subject } from './observe.js';
import {
  conditionHolds,
  Scope,
  type ActionType,
  type AlertRule,
  type MetricValue,
} from './rules.js';

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

/** One (rule, subject) pair being watched. */
interface RuleState {
  rule: AlertRule;
  subject: Subject;
  /** When the condition started to hold (epoch ms), while it holds. */
  pendingSince?: number;
  /** When the condition of a firing alert stopped holding (epoch ms), until it resolves. */
  clearSince?: number;
  firing: boolean;
  /** Its record in the control bucket, while firing. */
  stored?: StoredAlert;
  lastValue: MetricValue | null;
}

/** A firing alert as kept in the control bucket. */
interface StoredAlert {
  rule: string;
  subject: Subject;
  since: number;
  firedAt: number;
  by: string;
  lastAction?: Pick<ActionRecord, 'action' | 'ok' | 'controllerId' | 'finishedAt'>;
}

/** A stored alert, or undefined when the text is not one (written by another version). */
function readStoredAlert(text: string): StoredAlert | undefined {
  try {
    const value = JSON.parse(text) as Partial<StoredAlert>;
    const ok =
      typeof value.rule === 'string' &&
      typeof value.since === 'number' &&
      typeof value.subject?.key === 'string' &&
      typeof value.subject.scope === 'string';
    return ok ? (value as StoredAlert) : undefined;
  } catch {
    return undefined;
  }
}

/** The control-bucket key of a firing alert. */
function alertKey(rule: string, subject: Subject): string {
  return `alert.${rule}.${subject.key}`;
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
  let control: KV;
  let observer: Awaited<ReturnType<typeof startObserver>>;
  let sys: NatsConnection | undefined;
  try {
    const js = jetstream(nc);
    control = await new Kvm(nc).open(assetNames.controlBucket);
    const jsm = await js.jetstreamManager();
    observer = await startObserver(nc, jsm, { regions: o.regions, logger });
    observeNatsConnection(nc, 'controller');
    observeStreamStorage(jsm, () => o.regions.flatMap(regionStreams));
    if (o.sysNats) {
      sys = await connectNats({ ...o.sysNats, name: `${controllerId}-sys` }, logger);
      observeServerStorage(sys);
    }
  } catch (err) {
    await sys?.close();
    await nc.close();
    throw err;
  }
  const sysConnection = sys;
  const actions = createActionRunner(nc, jetstream(nc), control, controllerId);
  const alerts = createAlertSink(nc, o.webhook, logger);
  const states = new Map<string, RuleState>();
  /** When each (rule, subject)'s action last ran, epoch ms: the cooldown outlives a firing. */
  const lastActionAt = new Map<string, number>();
  const acting = new Set<string>();
  /** Set when this controller became leader: stored alerts are loaded before the next evaluation. */
  let mustLoad = false;

  const lease = startLeaderLease(control, {
    controllerId,
    leaseMs: o.leaseMs,
    logger,
    onChange: (leader) => {
      // Either way, the state belongs to whoever leads: a new leader reloads it from the bucket.
      states.clear();
      lastActionAt.clear();
      mustLoad = leader;
    },
  });

  const loadStoredAlerts = async (): Promise<void> => {
    const byName = new Map(o.rules.map((r) => [r.name, r]));
    for await (const key of await control.keys('alert.>')) {
      const entry = await control.get(key);
      if (entry?.operation !== 'PUT') continue;
      const stored = readStoredAlert(entry.string());
      const rule = stored && byName.get(stored.rule);
      if (!stored || !rule || rule.scope !== stored.subject.scope) {
        // Unreadable, or its rule was removed or changed: what its action wrote goes with it.
        const done = stored?.lastAction?.action;
        if (stored && done && isReversible(done)) await lift(done, stored.rule, stored.subject);
        await control.delete(key);
        continue;
      }
      states.set(key, {
        rule,
        subject: stored.subject,
        pendingSince: stored.since,
        firing: true,
        stored,
        lastValue: null,
      });
      if (stored.lastAction) lastActionAt.set(key, stored.lastAction.finishedAt);
    }
    logger.info({ alerts: states.size }, 'leader: firing alerts loaded');
  };

  /** Lifts a reversible action; throws when it could not, so that the alert stays to retry. */
  const lift = async (action: ActionType, rule: string, subject: Subject): Promise<void> => {
    const record = await actions.lift(action, rule, subject);
    if (!record.ok) {
      logger.error({ ...record }, 'recovery action not lifted');
      throw new Error(`${action} of rule ${rule} on ${subject.key} not lifted`);
    }
    logger.info({ ...record }, 'recovery action lifted');
  };

  const event = (state: RuleState, status: AlertEvent['status']): AlertEvent => ({
    status,
    rule: state.rule.name,
    severity: state.rule.severity,
    ...(state.rule.description === undefined ? {} : { description: state.rule.description }),
    subject: state.subject,
    metric: state.rule.metric,
    value: state.lastValue,
    threshold: { op: state.rule.op, value: state.rule.value },
    since: state.pendingSince ?? Date.now(),
    at: Date.now(),
    controllerId,
  });

  const runAction = async (key: string, state: RuleState): Promise<void> => {
    const { rule, subject, stored } = state;
    if (!rule.action || !stored || acting.has(key)) return;
    const last = lastActionAt.get(key);
    if (last !== undefined && Date.now() - last < rule.cooldownMs) return;
    // Fencing: never start an action under a lease that may have passed to a standby.
    if (!lease.isLeader()) return;
    acting.add(key);
    try {
      const record = await actions.run(rule.action, rule.name, subject);
      lastActionAt.set(key, record.finishedAt);
      if (record.ok) logger.warn({ ...record }, 'recovery action ran');
      else logger.error({ ...record }, 'recovery action failed');
      if (!lease.isLeader() || state.stored !== stored) return; // resolved meanwhile
      stored.lastAction = {
        action: record.action,
        ok: record.ok,
        controllerId,
        finishedAt: record.finishedAt,
      };
      await control
        .put(key, JSON.stringify(stored))
        .catch((err: unknown) => logger.warn({ key, err }, 'firing alert not updated'));
    } finally {
      acting.delete(key);
    }
  };

  const fire = async (key: string, state: RuleState): Promise<void> => {
    const firedAt = Date.now();
    const stored: StoredAlert = {
      rule: state.rule.name,
      subject: state.subject,
      since: state.pendingSince ?? firedAt,
      firedAt,
      by: controllerId,
    };
    // Stored first: a leader that dies after this leaves its successor a firing alert, not a
    // second firing of the same condition.
    await control.put(key, JSON.stringify(stored));
    state.firing = true;
    state.stored = stored;
    logger.warn({ rule: state.rule.name, subject: state.subject.key }, 'alert firing');
    alerts.send(event(state, 'firing'));
    void runAction(key, state);
  };

  /**
   * Resolves a firing alert; false when it must stay firing for now: its action is still running,
   * or what the action wrote could not be lifted (tried again at the next evaluation).
   */
  const resolve = async (key: string, state: RuleState): Promise<boolean> => {
    // An action still running would write after the lift: wait for it.
    if (acting.has(key)) return false;
    // What the alert's action wrote is lifted before the alert is forgotten: a leader that dies
    // in between leaves its successor a firing alert to resolve (and lift, idempotently) again.
    if (state.rule.action && isReversible(state.rule.action)) {
      try {
        await lift(state.rule.action, state.rule.name, state.subject);
      } catch {
        return false;
      }
    }
    await control.delete(key);
    state.firing = false;
    delete state.stored;
    logger.info({ rule: state.rule.name, subject: state.subject.key }, 'alert resolved');
    alerts.send(event(state, 'resolved'));
    return true;
  };

  const evaluate = async (): Promise<void> => {
    const observed = await observer.sample();
    if (!lease.isLeader()) return;
    if (mustLoad) {
      await loadStoredAlerts();
      mustLoad = false;
    }
    const now = Date.now();
    const present = new Set<string>();
    for (const rule of o.rules) {
      for (const one of observed) {
        if (one.subject.scope !== rule.scope) continue;
        const key = alertKey(rule.name, one.subject);
        present.add(key);
        const value = one.value(rule.metric);
        const holds = value !== undefined && conditionHolds(value, rule.op, rule.value);
        let state = states.get(key);
        if (!state) {
          if (!holds) continue;
          state = { rule, subject: one.subject, firing: false, lastValue: null };
          states.set(key, state);
        }
        state.subject = one.subject;
        state.lastValue = value ?? null;
        if (holds) {
          state.pendingSince ??= now;
          delete state.clearSince;
          if (!state.firing && now - state.pendingSince >= rule.forMs) await fire(key, state);
          // Still firing past the cooldown: the action runs again.
          else if (state.firing) void runAction(key, state);
        } else if (!state.firing) {
          states.delete(key);
        } else {
          state.clearSince ??= now;
          const clearFor = now - state.clearSince;
          if (clearFor >= rule.keepFiringForMs && (await resolve(key, state))) states.delete(key);
        }
        if (!lease.isLeader()) return;
      }
    }
    // Subjects no longer observed: an actor forgotten, a consumer removed. A region that could
    // not be read this time keeps its alerts until it can.
    const unread = new Set(unreadRegions(observed, o.regions));
    for (const [key, state] of states) {
      if (present.has(key)) continue;
      if (state.subject.scope !== Scope.Actor && unread.has(state.subject.region)) continue;
      if (state.firing) {
        state.lastValue = null;
        if (!(await resolve(key, state))) continue;
      }
      states.delete(key);
    }
  };

  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let evaluating: Promise<void> = Promise.resolve();
  const loop = (): void => {
    if (stopped) return;
    evaluating = evaluate()
      .catch((err: unknown) => logger.warn({ err }, 'evaluation failed'))
      .finally(() => {
        if (!stopped) timer = setTimeout(loop, o.evalIntervalMs);
      });
  };
  loop();

  let stopping: Promise<void> | undefined;
  return {
    controllerId,
    isLeader: () => lease.isLeader(),
    stop() {
      stopping ??= (async () => {
        stopped = true;
        clearTimeout(timer);
        await evaluating;
        await lease.release();
        observer.close();
        await alerts.close(WEBHOOK_CLOSE_GRACE_MS);
        await sysConnection?.close();
        await nc.drain();
      })();
      return stopping;
    },
  };
}
