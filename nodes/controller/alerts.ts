/**
 * Where alerts go: NATS (`vigil.alert.<severity>.<rule>`, JSON, for anything subscribed) and an
 * optional webhook (POST of the same JSON). The webhook is fed from a bounded queue in the
 * background, with a timeout per attempt and a bounded number of retries, so a slow or dead
 * receiver never holds up rule evaluation; what it loses is logged.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { subjects } from '../../protocol/index.js';
import type { Subject } from './observe.js';
import type { MetricName, MetricValue, Operator, Severity } from './rules.js';

/** An alert as published and posted. */
export interface AlertEvent {
  status: 'firing' | 'resolved';
  rule: string;
  severity: Severity;
  description?: string;
  subject: Subject;
  metric: MetricName;
  /** The value that made it fire (or the last one seen when it resolved). */
  value: MetricValue | null;
  threshold: { op: Operator; value: MetricValue };
  /** When the condition started to hold, epoch ms. */
  since: number;
  /** When this event was raised, epoch ms. */
  at: number;
  /** The controller that raised it. */
  controllerId: string;
}

/** The subject of `rule`'s alerts. */
export function alertSubject(severity: Severity, rule: string): string {
  return subjects.alert(severity, rule);
}

/** Webhook delivery settings. */
export interface WebhookOptions {
  url: string;
  /** Per attempt, ms. Default {@link WEBHOOK_DEFAULTS.timeoutMs}. */
  timeoutMs?: number;
  /** Attempts per alert, the first included. Default {@link WEBHOOK_DEFAULTS.attempts}. */
  attempts?: number;
  /** Delay before the first retry, doubling, ms. Default {@link WEBHOOK_DEFAULTS.retryDelayMs}. */
  retryDelayMs?: number;
  /** Alerts waiting for the webhook; past it the oldest is dropped. Default 1 000. */
  maxQueued?: number;
}

/** Defaults of {@link WebhookOptions}. */
export const WEBHOOK_DEFAULTS = {
  timeoutMs: 5_000,
  attempts: 3,
  retryDelayMs: 500,
  maxQueued: 1_000,
} as const;

/** Sends alerts. */
export interface AlertSink {
  /** Publishes on NATS now and queues the webhook POST; never throws. */
  send(alert: AlertEvent): void;
  /** Waits (at most `graceMs`) for queued webhook posts, then stops. */
  close(graceMs: number): Promise<void>;
}

/** Creates the sink; without `webhook`, alerts go to NATS only. */
export function createAlertSink(
  nc: NatsConnection,
  webhook: WebhookOptions | undefined,
  logger: Logger,
): AlertSink {
  const queue: AlertEvent[] = [];
  let sending: Promise<void> | undefined;
  let closed = false;
  const o = webhook ? { ...WEBHOOK_DEFAULTS, ...webhook } : undefined;

  const post = async (alert: AlertEvent): Promise<void> => {
    if (!o) return;
    const body = JSON.stringify(alert);
    for (let attempt = 1; attempt <= o.attempts; attempt++) {
      try {
        const res = await fetch(o.url, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body,
          signal: AbortSignal.timeout(o.timeoutMs),
        });
        await res.body?.cancel();
        if (res.ok) return;
        // A 4xx other than 429 will not get better by asking again.
        if (res.status < 500 && res.status !== 429) {
          logger.warn({ rule: alert.rule, status: res.status }, 'alert webhook refused the alert');
          return;
        }
        logger.warn({ rule: alert.rule, status: res.status, attempt }, 'alert webhook failed');
      } catch (err) {
        logger.warn({ rule: alert.rule, attempt, err }, 'alert webhook unreachable');
      }
      if (attempt < o.attempts && !closed) {
        await new Promise((resolve) => setTimeout(resolve, o.retryDelayMs * 2 ** (attempt - 1)));
      }
    }
    logger.error({ rule: alert.rule, status: alert.status }, 'alert not delivered to the webhook');
  };
  const drain = async (): Promise<void> => {
    for (let next = queue.shift(); next; next = queue.shift()) await post(next);
    sending = undefined;
  };

  return {
    send(alert) {
      try {
        nc.publish(alertSubject(alert.severity, alert.rule), JSON.stringify(alert));
      } catch (err) {
        logger.warn({ rule: alert.rule, err }, 'alert not published');
      }
      if (!o || closed) return;
      if (queue.length >= o.maxQueued) {
        const dropped = queue.shift();
        logger.error({ rule: dropped?.rule }, 'alert webhook queue full; oldest alert dropped');
      }
      queue.push(alert);
      sending ??= drain();
    },
    async close(graceMs) {
      closed = true;
      if (!sending) return;
      await Promise.race([sending, new Promise((resolve) => setTimeout(resolve, graceMs))]);
    },
  };
}
