/**
 * NATS header names on request messages. Trace context uses the W3C names so OpenTelemetry's
 * propagator reads and writes them unchanged; dedup uses JetStream's own `Nats-Msg-Id`, which is
 * the task id (itself derived from the client's `Idempotency-Key`).
 */
export const Header = {
  /** W3C trace context. */
  TraceParent: 'traceparent',
  /** W3C vendor trace state. */
  TraceState: 'tracestate',
  /** JetStream deduplication id: the task id, itself derived from the idempotency key. */
  MsgId: 'Nats-Msg-Id',
  /**
   * Absolute deadline, epoch milliseconds, for publishers that are not Vigil's client. Vigil's
   * own requests carry it in the envelope: every header is parsed by nats-server and costs
   * throughput on the hot path.
   */
  Deadline: 'Vigil-Deadline',
  /** Priority class (see `Priority`); Vigil's requests carry it as a subject token instead. */
  Priority: 'Vigil-Priority',
} as const;

/** One of the {@link Header} values. */
export type Header = (typeof Header)[keyof typeof Header];
