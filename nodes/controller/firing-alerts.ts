/**
 * What happens when an alert fires and when it resolves. Firing stores the alert in the control
 * bucket first, then announces it and runs its action; the action runs once per firing, again
 * only past the rule's cooldown, and only under a lease this controller may act under (fencing).
 * Resolving waits for a running action, lifts what a reversible action wrote, and only then
 * deletes the stored alert and announces it, so a leader that dies in between leaves its
 * successor an alert to resolve (and lift, idempotently) again.
 */
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { isReversible, type ActionRunner } from './actions.js';
import type { AlertEvent, AlertSink } from './alerts.js';
import { readStoredAlert, type RuleState, type StoredAlert } from './alert-state.js';
import type { LeaderLease } from './lease.js';
import type { Subject } from './observe.js';
import type { ActionType, AlertRule } from './rules.js';

/** Fires, acts on and resolves alerts. */
export interface FiringAlerts {
  /** Stores `state`'s alert as firing, announces it and starts its action. */
  fire(key: string, state: RuleState): Promise<void>;
  /**
   * Runs the firing alert's action unless it is running, within its cooldown, or this controller
   * may not act; records the run in the stored alert. Never throws.
   */
  act(key: string, state: RuleState): Promise<void>;
  /**
   * Resolves a firing alert; false when it must stay firing for now: its action is still running,
   * or what the action wrote could not be lifted (tried again at the next evaluation).
   */
  resolve(key: string, state: RuleState): Promise<boolean>;
  /**
   * The alerts a previous leader left firing, by key, for `rules`. A stored alert whose rule is
   * gone or changed scope is deleted, with what its action wrote.
   */
  loadStored(rules: readonly AlertRule[]): Promise<Map<string, RuleState>>;
  /** Forgets when actions last ran: on a change of leader the cooldowns are the new leader's. */
  forgetActionTimes(): void;
}

/** What {@link createFiringAlerts} needs. */
export interface FiringAlertsDeps {
  /** The control bucket, where firing alerts are kept. */
  control: KV;
  actions: ActionRunner;
  alerts: AlertSink;
  /** Checked before every action (fencing). */
  lease: Pick<LeaderLease, 'isLeader'>;
  controllerId: string;
  logger: Logger;
}

/** Creates the firing side of the alert rules, acting as `deps.controllerId`. */
export function createFiringAlerts(deps: FiringAlertsDeps): FiringAlerts {
  return new FiringAlertsImpl(deps);
}

class FiringAlertsImpl implements FiringAlerts {
  readonly #deps: FiringAlertsDeps;
  /** When each (rule, subject)'s action last ran, epoch ms: the cooldown outlives a firing. */
  readonly #lastActionAt = new Map<string, number>();
  /** Keys whose action is running now. */
  readonly #acting = new Set<string>();

  constructor(deps: FiringAlertsDeps) {
    this.#deps = deps;
  }

  async fire(key: string, state: RuleState): Promise<void> {
    const { control, controllerId, logger } = this.#deps;
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
    this.#deps.alerts.send(alertEvent(state, 'firing', controllerId));
    void this.act(key, state);
  }

  async act(key: string, state: RuleState): Promise<void> {
    const { actions, lease, logger } = this.#deps;
    const { rule, subject, stored } = state;
    if (!rule.action || !stored || this.#acting.has(key)) return;
    const last = this.#lastActionAt.get(key);
    if (last !== undefined && Date.now() - last < rule.cooldownMs) return;
    // Fencing: never start an action under a lease that may have passed to a standby.
    if (!lease.isLeader()) return;
    this.#acting.add(key);
    try {
      const record = await actions.run(rule.action, rule.name, subject);
      this.#lastActionAt.set(key, record.finishedAt);
      if (record.ok) logger.warn({ ...record }, 'recovery action ran');
      else logger.error({ ...record }, 'recovery action failed');
      if (!lease.isLeader() || state.stored !== stored) return; // resolved meanwhile
      stored.lastAction = {
        action: record.action,
        ok: record.ok,
        controllerId: this.#deps.controllerId,
        finishedAt: record.finishedAt,
      };
      await this.#deps.control
        .put(key, JSON.stringify(stored))
        .catch((err: unknown) => logger.warn({ key, err }, 'firing alert not updated'));
    } finally {
      this.#acting.delete(key);
    }
  }

  async resolve(key: string, state: RuleState): Promise<boolean> {
    // An action still running would write after the lift: wait for it.
    if (this.#acting.has(key)) return false;
    // What the alert's action wrote is lifted before the alert is forgotten: a leader that dies
    // in between leaves its successor a firing alert to resolve (and lift, idempotently) again.
    if (state.rule.action && isReversible(state.rule.action)) {
      try {
        await this.#lift(state.rule.action, state.rule.name, state.subject);
      } catch {
        return false;
      }
    }
    await this.#deps.control.delete(key);
    state.firing = false;
    delete state.stored;
    this.#deps.logger.info({ rule: state.rule.name, subject: state.subject.key }, 'alert resolved');
    this.#deps.alerts.send(alertEvent(state, 'resolved', this.#deps.controllerId));
    return true;
  }

  async loadStored(rules: readonly AlertRule[]): Promise<Map<string, RuleState>> {
    const { control } = this.#deps;
    const byName = new Map(rules.map((r) => [r.name, r]));
    const loaded = new Map<string, RuleState>();
    for await (const key of await control.keys('alert.>')) {
      const entry = await control.get(key);
      if (entry?.operation !== 'PUT') continue;
      const stored = readStoredAlert(entry.string());
      const rule = stored && byName.get(stored.rule);
      if (!stored || !rule || rule.scope !== stored.subject.scope) {
        // Unreadable, or its rule was removed or changed: what its action wrote goes with it.
        const done = stored?.lastAction?.action;
        if (stored && done && isReversible(done))
          await this.#lift(done, stored.rule, stored.subject);
        await control.delete(key);
        continue;
      }
      loaded.set(key, {
        rule,
        subject: stored.subject,
        pendingSince: stored.since,
        firing: true,
        stored,
        lastValue: null,
      });
      if (stored.lastAction) this.#lastActionAt.set(key, stored.lastAction.finishedAt);
    }
    this.#deps.logger.info({ alerts: loaded.size }, 'leader: firing alerts loaded');
    return loaded;
  }

  forgetActionTimes(): void {
    this.#lastActionAt.clear();
  }

  /** Lifts a reversible action; throws when it could not, so that the alert stays to retry. */
  async #lift(action: ActionType, rule: string, subject: Subject): Promise<void> {
    const record = await this.#deps.actions.lift(action, rule, subject);
    if (!record.ok) {
      this.#deps.logger.error({ ...record }, 'recovery action not lifted');
      throw new Error(`${action} of rule ${rule} on ${subject.key} not lifted`);
    }
    this.#deps.logger.info({ ...record }, 'recovery action lifted');
  }
}

/** The alert event of `state`, as published and posted. */
function alertEvent(
  state: RuleState,
  status: AlertEvent['status'],
  controllerId: string,
): AlertEvent {
  return {
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
  };
}
