/**
 * W3C trace context in NATS message headers, so one trace runs from the gateway's HTTP span
 * through the queue into the actor. The propagator is whatever the node's SDK installed
 * (`@opentelemetry/api`'s global); without an SDK, injecting and extracting do nothing.
 *
 * I/O-free: the getter and setter work on any object with nats.js `MsgHdrs`' `get`/`set`/`keys`.
 */
import type { TextMapGetter, TextMapSetter } from '@opentelemetry/api';

/** The part of nats.js `MsgHdrs` the propagator needs. */
export interface TraceCarrier {
  get(name: string): string;
  set(name: string, value: string): void;
  keys(): string[];
}

/**
 * Reads trace context from NATS headers. nats.js answers `''` for a missing header; the
 * propagator must see `undefined`, or it would parse an empty `traceparent`.
 */
export const natsHeaderGetter: TextMapGetter<TraceCarrier | undefined> = {
  get(carrier, key) {
    const value = carrier?.get(key);
    return value === undefined || value === '' ? undefined : value;
  },
  keys(carrier) {
    return carrier?.keys() ?? [];
  },
};

/** Writes trace context into NATS headers. */
export const natsHeaderSetter: TextMapSetter<TraceCarrier> = {
  set(carrier, key, value) {
    carrier.set(key, value);
  },
};

/**
 * OpenTelemetry messaging semantic-convention names used on Vigil's spans, and Vigil's own
 * attributes beside them.
 */
export const MessagingAttr = {
  System: 'messaging.system',
  DestinationName: 'messaging.destination.name',
  DestinationTemplate: 'messaging.destination.template',
  OperationType: 'messaging.operation.type',
  OperationName: 'messaging.operation.name',
  MessageId: 'messaging.message.id',
  /** Vigil: the task id (also the message id). */
  TaskId: 'vigil.task.id',
  /** Vigil: the model the task is for. */
  Model: 'vigil.model',
  /** Vigil: which attempt at the task this span is (1 = first delivery). */
  Attempt: 'vigil.task.attempt',
  /** Vigil: the region the task was published to or runs in. */
  Region: 'vigil.region',
} as const;

/** `messaging.system` for NATS. */
export const MESSAGING_SYSTEM_NATS = 'nats';
