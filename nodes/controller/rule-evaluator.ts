/**
 * One evaluation of the alert rules against what the observer sampled, while this controller
 * leads. Each (rule, subject) moves through: condition holds -> pending for `forMs` -> firing ->
 * condition clear for `keepFiringForMs` -> resolved. A subject no longer observed (an actor
 * drained and forgotten) counts as clear: it resolves after the same `keepFiringForMs`, unless
 * its region could not be read this time. What firing and resolving do is `firing-alerts.ts`.
 */
import { alertKey, type RuleState } from './alert-state.js';
import type { FiringAlerts } from './firing-alerts.js';
import type { LeaderLease } from './lease.js';
import { unreadRegions, type Observed } from './observe.js';
import { conditionHolds, Scope, type AlertRule } from './rules.js';

/** Judges the rules at each evaluation. */
export interface RuleEvaluator {
  /** Evaluates every rule against `observed`; does nothing unless this controller leads. */
  evaluate(observed: readonly Observed[]): Promise<void>;
  /**
   * Called on every change of leadership: the state belongs to whoever leads, so it is dropped,
   * and a new leader reloads the firing alerts from the bucket before its first evaluation.
   */
  leadershipChanged(leader: boolean): void;
}

/** What {@link createRuleEvaluator} needs. */
export interface RuleEvaluatorDeps {
  rules: readonly AlertRule[];
  /** The regions observed: one that was not read keeps its alerts as they are. */
  regions: readonly string[];
  firing: FiringAlerts;
  /** Checked before an evaluation and after each step of it (fencing). */
  lease: Pick<LeaderLease, 'isLeader'>;
}

/** Creates the evaluator of `deps.rules`. */
export function createRuleEvaluator(deps: RuleEvaluatorDeps): RuleEvaluator {
  return new RuleEvaluatorImpl(deps);
}

class RuleEvaluatorImpl implements RuleEvaluator {
  readonly #deps: RuleEvaluatorDeps;
  /** Every (rule, subject) pending, firing or clearing, by its alert key. */
  readonly #states = new Map<string, RuleState>();
  /** Set when this controller became leader: stored alerts are loaded before the next evaluation. */
  #mustLoad = false;

  constructor(deps: RuleEvaluatorDeps) {
    this.#deps = deps;
  }

  leadershipChanged(leader: boolean): void {
    this.#states.clear();
    this.#deps.firing.forgetActionTimes();
    this.#mustLoad = leader;
  }

  async evaluate(observed: readonly Observed[]): Promise<void> {
    const { lease, firing } = this.#deps;
    if (!lease.isLeader()) return;
    if (this.#mustLoad) {
      const loaded = await firing.loadStored(this.#deps.rules);
      for (const [key, state] of loaded) this.#states.set(key, state);
      this.#mustLoad = false;
    }
    const now = Date.now();
    const present = new Set<string>();
    for (const rule of this.#deps.rules) {
      for (const one of observed) {
        if (one.subject.scope !== rule.scope) continue;
        const key = alertKey(rule.name, one.subject);
        present.add(key);
        await this.#judge(key, rule, one, now);
        if (!lease.isLeader()) return;
      }
    }
    await this.#resolveUnobserved(observed, present, now);
  }

  /** Moves one (rule, subject) along by whether its condition holds now. */
  async #judge(key: string, rule: AlertRule, one: Observed, now: number): Promise<void> {
    const { firing } = this.#deps;
    const value = one.value(rule.metric);
    const holds = value !== undefined && conditionHolds(value, rule.op, rule.value);
    let state = this.#states.get(key);
    if (!state) {
      if (!holds) return;
      state = { rule, subject: one.subject, firing: false, lastValue: null };
      this.#states.set(key, state);
    }
    state.subject = one.subject;
    state.lastValue = value ?? null;
    if (holds) {
      state.pendingSince ??= now;
      delete state.clearSince;
      if (!state.firing && now - state.pendingSince >= rule.forMs) await firing.fire(key, state);
      // Still firing past the cooldown: the action runs again.
      else if (state.firing) void firing.act(key, state);
    } else if (!state.firing) {
      this.#states.delete(key);
    } else {
      state.clearSince ??= now;
      const clearFor = now - state.clearSince;
      if (clearFor >= rule.keepFiringForMs && (await firing.resolve(key, state))) {
        this.#states.delete(key);
      }
    }
  }

  /**
   * Subjects no longer observed: an actor forgotten, a consumer removed. A region that could not
   * be read this time keeps its alerts until it can.
   */
  async #resolveUnobserved(
    observed: readonly Observed[],
    present: Set<string>,
    now: number,
  ): Promise<void> {
    const unread = new Set(unreadRegions(observed, this.#deps.regions));
    for (const [key, state] of this.#states) {
      if (present.has(key)) continue;
      if (state.subject.scope !== Scope.Actor && unread.has(state.subject.region)) continue;
      if (state.firing) {
        state.lastValue = null;
        // Gone is clear: the same hysteresis as a condition that stopped holding.
        state.clearSince ??= now;
        if (now - state.clearSince < state.rule.keepFiringForMs) continue;
        if (!(await this.#deps.firing.resolve(key, state))) continue;
      }
      this.#states.delete(key);
    }
  }
}
