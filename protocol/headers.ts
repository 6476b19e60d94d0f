/**
 * NATS header names on request messages. Trace context uses the W3C names so OpenTelemetry's
 * propagator reads and writes them unchanged; dedup uses JetStream's own `Nats-Msg-Id`.
 */
export const Header = {
  /** W3C trace context. */
  TraceParent: 'traceparent',
  /** W3C vendor trace state. */
  TraceState: 'tracestate',
  /** JetStream deduplication id: the task id, itself derived from the idempotency key. */
  MsgId: 'Nats-Msg-Id',
  /** Absolute deadline, epoch milliseconds; work past it is not started. */
  Deadline: 'Vigil-Deadline',
  /** Priority class (see `Priority`). */
  Priority: 'Vigil-Priority',
  /** The tenant the request belongs to, for routing and accounting without decoding. */
  Tenant: 'Vigil-Tenant',
} as const;

/** One of the {@link Header} values. */
export type Header = (typeof Header)[keyof typeof Header];
