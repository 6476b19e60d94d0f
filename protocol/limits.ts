/**
 * The limits every task payload is held to, defined once and checked on both sides of the queue:
 * a client (the gateway, an internal service) checks a task before it publishes it, and an actor
 * checks every payload it decodes (`codec.ts`). A limit enforced only after acceptance would let a
 * task be accepted that no actor can read, so whatever the actor refuses, the client refuses
 * first, naming the limit, and publishes nothing.
 */
import { ErrorCode, ValidationError, VigilError } from './errors.js';

/** Limits of one MessagePack payload on the wire. */
export interface WireLimits {
  /** Largest payload, in bytes. */
  maxBytes: number;
  /** Deepest nesting of arrays and maps; the top-level value is depth 1. */
  maxDepth: number;
  /** Most array elements plus map entries in the whole payload. */
  maxItems: number;
}

/**
 * 8 MiB: above the inputs the gateway accepts (1 MiB by default), below nats-server's 64 MiB hard
 * cap; 32 levels and a million items are more than any model input needs and bound the decoder's
 * work and stack.
 */
export const WIRE_LIMITS: Readonly<WireLimits> = Object.freeze({
  maxBytes: 8 * 1024 * 1024,
  maxDepth: 32,
  maxItems: 1_000_000,
});

/**
 * Room kept for a request's NATS headers (message id, trace context) under the server's
 * `max_payload`, which counts headers and payload together: a few hundred bytes in practice.
 */
export const HEADER_ALLOWANCE_BYTES = 2048;

/** Keys a JavaScript MessagePack decoder renames or drops: refused rather than altered. */
const FORBIDDEN_KEY = '__proto__';

/** Items kept for the envelope's or record's own fields around the checked ones. */
const OWN_FIELD_ITEMS = 64;

/**
 * Checks values that travel as fields of a top-level map (a request's `input` and `params`, a
 * record's `result`) against what the decoder on the other side accepts ({@link scanMsgpack}):
 * the top-level map is level 1, so a field is at level 2, and a non-empty array or object may sit
 * at level `maxDepth - 1` at most; arrays count their elements and maps their keys and values;
 * and only the types MessagePack carries without extensions (null, booleans, numbers, strings,
 * byte arrays, arrays and plain objects). Iterative, so a hostile nesting cannot overflow the
 * stack (the encoder recurses).
 * @throws ValidationError naming the field and the limit.
 */
export function checkTaskFields(
  fields: Readonly<Record<string, unknown>>,
  limits: Readonly<WireLimits> = WIRE_LIMITS,
): void {
  let items = OWN_FIELD_ITEMS;
  for (const [field, value] of Object.entries(fields)) {
    items += walk(value, field, limits.maxDepth - 2, limits.maxItems - items);
  }
}

/**
 * Walks `root` (level 1 of its own), returning how many items the decoder will count in it; a
 * non-empty container deeper than `maxLevel` is refused.
 */
function walk(root: unknown, field: string, maxLevel: number, itemBudget: number): number {
  const stack: { value: unknown; level: number }[] = [{ value: root, level: 1 }];
  let items = 0;
  while (stack.length > 0) {
    const { value, level } = stack.pop()!;
    const inside = childrenOf(value, field);
    if (inside === undefined || inside.children.length === 0) continue;
    if (level > maxLevel) {
      throw new ValidationError(
        `nests deeper than ${maxLevel} levels of arrays and objects, the most a task can carry`,
        field,
      );
    }
    items += inside.items;
    if (items > itemBudget) {
      throw new ValidationError(
        `holds more than ${itemBudget} array elements and object keys and values`,
        field,
      );
    }
    for (const child of inside.children) stack.push({ value: child, level: level + 1 });
  }
  return items;
}

/**
 * The values inside a container and the items the decoder counts for it (an array's elements, a
 * map's keys and values), `undefined` for a leaf; refuses what the wire cannot carry.
 */
function childrenOf(
  value: unknown,
  field: string,
): { children: unknown[]; items: number } | undefined {
  if (value === null) return undefined;
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
      return undefined;
    case 'object':
      break;
    default:
      throw new ValidationError(
        `contains a ${typeof value}, which JSON and MessagePack cannot carry`,
        field,
      );
  }
  if (value instanceof Uint8Array) return undefined;
  if (Array.isArray(value)) {
    const elements = value as unknown[];
    // An array hole or `undefined` would be encoded as an extension type no actor accepts.
    for (let i = 0; i < elements.length; i += 1) {
      if (elements[i] === undefined)
        throw new ValidationError(`has an undefined element at ${i}`, field);
    }
    return { children: elements, items: elements.length };
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new ValidationError(
      'contains an object that is not plain data (a Date, Map or class instance)',
      field,
    );
  }
  const record = value as Record<string, unknown>;
  const children: unknown[] = [];
  for (const key of Object.keys(record)) {
    if (key === FORBIDDEN_KEY) {
      throw new ValidationError(`has a key named ${FORBIDDEN_KEY}, which decoders rename`, field);
    }
    // `undefined` properties are left out by the encoder, like JSON.stringify does.
    if (record[key] !== undefined) children.push(record[key]);
  }
  return { children, items: children.length * 2 };
}

/**
 * The size limit of an encoded request: the wire's, or what the server accepts once the headers
 * are counted, whichever is smaller.
 */
export function requestByteLimit(serverMaxPayload: number | undefined): number {
  const server =
    serverMaxPayload === undefined ? Infinity : serverMaxPayload - HEADER_ALLOWANCE_BYTES;
  return Math.min(WIRE_LIMITS.maxBytes, server);
}

/**
 * Refuses an encoded request larger than `limit` bytes, before it is published.
 * @throws VigilError `payload_too_large` naming both sizes.
 */
export function checkRequestSize(bytes: Uint8Array, limit: number): void {
  if (bytes.byteLength > limit) {
    throw new VigilError(
      ErrorCode.PayloadTooLarge,
      `the task is ${bytes.byteLength} bytes encoded, more than the ${limit} bytes a request may be (the wire's and the NATS server's limits)`,
      false,
    );
  }
}
