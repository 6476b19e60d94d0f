/**
 * The controller: leader-elected alert rules with automatic recovery. Reading order:
 * `controller.ts` (wiring), `observe.ts`, `rule-evaluator.ts`, `firing-alerts.ts`, `actions.ts`,
 * with `lease.ts` fencing them.
 */
export { startController, CONTROLLER_DEFAULTS } from './controller.js';
export type { Controller, ControllerOptions } from './controller.js';
export { CONTROLLER_CONFIG, controllerOptionsFromEnv, DEFAULT_RULES_FILE } from './config.js';
export {
  ActionType,
  conditionHolds,
  DEFAULT_ACTION_COOLDOWN_MS,
  loadRules,
  METRICS,
  OPERATORS,
  parseRules,
  Scope,
  SEVERITIES,
} from './rules.js';
export type { AlertRule, MetricName, MetricValue, Operator, Severity } from './rules.js';
export {
  checkLeaseMs,
  LEADER_KEY,
  leaderActsUntil,
  leaseExpired,
  MIN_LEASE_MS,
  renewIntervalMs,
  standbyPollMs,
  startLeaderLease,
} from './lease.js';
export type { LeaderLease, LeaderLeaseOptions, LeaseRecord } from './lease.js';
export {
  FORGET_ACTOR_AFTER_MS,
  STALE_AFTER_INTERVALS,
  STUCK_AFTER_INTERVALS,
  actorObserved,
  noteBeat,
  startObserver,
} from './observe.js';
export type { ActorSeen, Observed, Observer, ObserverOptions, Subject } from './observe.js';
export { alertSubject, createAlertSink, WEBHOOK_DEFAULTS } from './alerts.js';
export type { AlertEvent, AlertSink, WebhookOptions } from './alerts.js';
export {
  COMMAND_TIMEOUT_MS,
  createActionRunner,
  isReversible,
  rolloutHoldKey,
  routeOverrideKey,
} from './actions.js';
export type { ActionRecord, ActionRunner, Holder, RolloutHold, RouteOverride } from './actions.js';
