/**
 * The wire's limits are checked twice, before publishing (`checkTaskFields`, on JavaScript values)
 * and when decoding (`scanMsgpack`, on bytes). The property that keeps an accepted task readable:
 * whatever the first check lets through, the second accepts; and for nesting, the two draw the
 * line at exactly the same place.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  checkTaskFields,
  decode,
  encode,
  scanMsgpack,
  WIRE_LIMITS,
  type WireLimits,
} from '../../protocol/index.js';

/** A value like a request envelope around `input`: the top-level map and its own fields. */
function envelopeAround(input: unknown): Record<string, unknown> {
  return {
    v: 1,
    id: 'abcdefghijklmnopqrstuvwxyz',
    tenant: 'alpha',
    model: 'echo',
    version: 'v1',
    priority: 'interactive',
    input,
    params: { max_tokens: 4 },
    createdAt: 1,
    deadline: 2,
  };
}

function accepts(run: () => void): boolean {
  try {
    run();
    return true;
  } catch {
    return false;
  }
}

/** Nested `depth` levels deep by `wrap`, with `leaf` innermost. */
function nested(depth: number, wrap: (v: unknown) => unknown, leaf: unknown): unknown {
  let value = leaf;
  for (let i = 0; i < depth; i += 1) value = wrap(value);
  return value;
}

const SHAPES: [string, (v: unknown) => unknown, unknown][] = [
  ['arrays around a string', (v) => [v], 'x'],
  ['objects around a number', (v) => ({ k: v }), 7],
  ['arrays around an empty array', (v) => [v], []],
  ['objects around an empty object', (v) => ({ k: v }), {}],
  ['mixed around null', (v) => ({ a: [v, 1] }), null],
];

describe('the check before publishing and the decoder agree', () => {
  for (const [name, wrap, leaf] of SHAPES) {
    test(`nesting: ${name}, at every depth from 1 to 40`, () => {
      for (let depth = 1; depth <= 40; depth += 1) {
        const input = nested(depth, wrap, leaf);
        const before = accepts(() => checkTaskFields({ input, params: { max_tokens: 4 } }));
        const bytes = encode(envelopeAround(input));
        const after = accepts(() => scanMsgpack(bytes, WIRE_LIMITS));
        assert.equal(
          before,
          after,
          `${name} at depth ${depth}: before ${before}, decoder ${after}`,
        );
      }
    });
  }

  test('item counts: what the check accepts, the decoder accepts', () => {
    const limits: WireLimits = { ...WIRE_LIMITS, maxItems: 500 };
    for (let n = 300; n <= 520; n += 7) {
      for (const input of [
        Array.from({ length: n }, (_, i) => i),
        Object.fromEntries(Array.from({ length: Math.floor(n / 2) }, (_, i) => [`k${i}`, i])),
      ]) {
        const before = accepts(() => checkTaskFields({ input }, limits));
        const after = accepts(() => scanMsgpack(encode(envelopeAround(input)), limits));
        if (before) assert.ok(after, `accepted ${n} items before, refused by the decoder`);
      }
    }
  });

  test('what is accepted decodes to the same value', () => {
    const input = {
      text: 'ünïcödé ✓',
      numbers: [0, -1, 2 ** 53 - 1, 1.5, -0.25, 1e300],
      flags: [true, false, null],
      bytes: new Uint8Array([1, 2, 3]),
      nested: { a: { b: { c: [] } } },
      constructor: 'a plain key',
    };
    checkTaskFields({ input });
    const round = decode(encode(envelopeAround(input))) as { input: unknown };
    assert.deepEqual(round.input, { ...input, bytes: Buffer.from([1, 2, 3]) });
  });

  test('what the decoder would refuse or alter is refused, naming the field', () => {
    const refused: [unknown, RegExp][] = [
      [{ when: new Date(0) }, /input: contains an object that is not plain data/],
      [new Map([['a', 1]]), /not plain data/],
      [[1, undefined], /input: has an undefined element at 1/],
      [JSON.parse('{"__proto__": {"x": 1}}'), /input: has a key named __proto__/],
      [{ f: () => 1 }, /contains a function/],
      [{ big: 10n }, /contains a bigint/],
    ];
    for (const [input, message] of refused) {
      assert.throws(() => checkTaskFields({ input }), message);
    }
    assert.throws(() => checkTaskFields({ params: nested(31, (v) => [v], 1) }), /^.*params:/);
  });

  test('a cycle is refused by depth, not an endless walk', () => {
    const cycle: Record<string, unknown> = {};
    cycle['self'] = cycle;
    assert.throws(() => checkTaskFields({ input: cycle }), /nests deeper than/);
  });
});
