import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decode,
  decodeAs,
  encode,
  PayloadError,
  requestEnvelopeSchema,
  taskIdForIdempotencyKey,
  newTaskId,
  TASK_ID,
} from '../../protocol/index.js';

describe('msgpack codec limits', () => {
  test('round-trips ordinary values', () => {
    const value = { a: 1, b: 'two', c: [1.5, null, true], d: { e: new Uint8Array([1, 2]) } };
    assert.deepEqual(decode(encode(value)), { ...value, d: { e: Buffer.from([1, 2]) } });
  });

  test('rejects an oversized payload before decoding it', () => {
    const bytes = encode({ text: 'x'.repeat(2000) });
    assert.throws(
      () => decode(bytes, { maxBytes: 1000 }),
      (err: unknown) => {
        assert.ok(err instanceof PayloadError);
        assert.equal(err.code, 'invalid_payload');
        assert.equal(err.retryable, false);
        assert.match(err.message, /more than the limit of 1000/);
        return true;
      },
    );
  });

  test('rejects nesting deeper than the limit (and does not overflow the stack on 100k levels)', () => {
    let nested: unknown = 1;
    for (let i = 0; i < 40; i += 1) nested = [nested];
    assert.throws(() => decode(encode(nested), { maxDepth: 32 }), PayloadError);
    const bomb = new Uint8Array(100_000).fill(0x91); // 100k nested one-element arrays
    assert.throws(() => decode(bomb), /deeper than 32/);
  });

  test('rejects declared lengths that run past the end without allocating them', () => {
    const hugeArray = Uint8Array.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert.throws(() => decode(hugeArray), /items past its end/);
    const hugeString = Uint8Array.from([0xdb, 0x7f, 0xff, 0xff, 0xff, 0x61]);
    assert.throws(() => decode(hugeString), /truncated/);
  });

  test('rejects too many items, trailing bytes, extension types, empty and reserved bytes', () => {
    assert.throws(() => decode(encode(new Array(50).fill(0)), { maxItems: 10 }), /more than 10/);
    assert.throws(() => decode(Uint8Array.from([0x01, 0x02])), /trailing/);
    assert.throws(
      () => decode(Uint8Array.from([0xd4, 0x01, 0x00])),
      /unsupported MessagePack type 0xd4/,
    );
    assert.throws(() => decode(new Uint8Array(0)), /empty/);
    assert.throws(() => decode(Uint8Array.from([0xc1])), PayloadError);
  });

  test('a well-formed payload of the wrong shape is a typed PayloadError naming the field', () => {
    const bytes = encode({ v: 1, id: 'not-an-id', tenant: 'a', model: 'echo' });
    assert.throws(
      () => decodeAs(requestEnvelopeSchema, bytes, 'request'),
      (err: unknown) => {
        assert.ok(err instanceof PayloadError);
        assert.match(err.message, /request\.id/);
        return true;
      },
    );
  });

  test('__proto__ keys do not pollute prototypes', () => {
    const bytes = Uint8Array.from([
      0x81,
      0xa9,
      ...Buffer.from('__proto__'),
      0x81,
      0xa1,
      0x78,
      0x01,
    ]);
    const value = decode(bytes) as Record<string, unknown>;
    assert.equal(({} as Record<string, unknown>)['x'], undefined);
    assert.equal(Object.getPrototypeOf(value), Object.prototype);
  });
});

describe('task ids', () => {
  test('random ids are 26 base32 characters and distinct', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newTaskId()));
    assert.equal(ids.size, 1000);
    for (const id of ids) assert.match(id, TASK_ID);
  });

  test('idempotency keys map to one id per tenant', () => {
    assert.equal(taskIdForIdempotencyKey('a', 'k1'), taskIdForIdempotencyKey('a', 'k1'));
    assert.notEqual(taskIdForIdempotencyKey('a', 'k1'), taskIdForIdempotencyKey('b', 'k1'));
    assert.match(taskIdForIdempotencyKey('a', 'k1'), TASK_ID);
  });
});
