/**
 * Hostile NATS messages, generated with fast-check, as a user allowed to publish them would send
 * them: requests (as `gateway` or `service`) that are truncated or corrupted at any offset,
 * declare huge lengths, carry wrong envelope versions, ids, tenants, deadlines or shapes; junk
 * replies (as an actor host) aimed at live waiters; junk commands (as the controller); junk
 * events. Payloads are plain data (hex), so a failure prints a case that replays.
 */
import fc from 'fast-check';
import {
  decode,
  encode,
  ENVELOPE_VERSION,
  hostCommandSchema,
  isNameToken,
  TASK_ID,
} from '../../../protocol/index.js';

/** A request published straight onto the request stream. */
export interface RequestCase {
  kind: 'request';
  user: 'gateway' | 'service';
  /** The subject's task id token. */
  subjectId: string;
  priority: string;
  /** What was done to the envelope, for the outcome table. */
  mutation: string;
  payloadHex: string;
}

/** A message published onto a gateway's reply subject while a caller waits there. */
export interface ReplyCase {
  kind: 'reply';
  /** What the junk is, for the outcome table. */
  mutation: string;
  /** Which live waiter's subject it goes to (an index into those seen), or another task's. */
  target: number;
  /** The payload: raw hex, or a record built for the target task at run time. */
  payloadHex?: string;
  record?: { idFrom: 'target' | 'other'; tenant: string; state: string; v: number };
}

/** A command to the actor host, as the controller. */
export interface CommandCase {
  kind: 'command';
  command: string;
  /** The body, as latin1 text (bytes). */
  body: string;
  /** To the real host, or to one that does not exist. */
  host: 'real' | 'other';
}

/** A lifecycle event nobody should act on. */
export interface EventCase {
  kind: 'event';
  tenant: string;
  payloadHex: string;
}

/** One hostile message. */
export type NatsCase = RequestCase | ReplyCase | CommandCase | EventCase;

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

const taskIds = fc.stringMatching(/^[a-z2-7]{26}$/);

/** A valid envelope for `id`, as a gateway would publish it. */
const envelope = fc.record({
  tenant: fc.constantFrom('alpha', 'alpha', 'beta', 'gamma'),
  input: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.string({ maxLength: 100 })),
  priority: fc.constantFrom('interactive', 'batch'),
  deadlineMs: fc.constantFrom(60_000, 60_000, 120_000, -1000),
});

type Fields = Record<string, unknown>;

/** Changes to the envelope's fields: each a wrong version, id, tenant, deadline or shape. */
const fieldMutations: [string, fc.Arbitrary<(e: Fields, otherId: string) => Fields>][] = [
  ['valid', fc.constant((e) => e)],
  ['version', fc.constantFrom(0, 2, 255, -1, '1', null, 1.5).map((v) => (e) => ({ ...e, v }))],
  ['id mismatch', fc.constant((e, other) => ({ ...e, id: other }))],
  [
    'id invalid',
    fc.constantFrom('', 'X', '../..', '*', '>', 'a'.repeat(27)).map((id) => (e) => ({ ...e, id })),
  ],
  [
    'tenant invalid',
    fc
      .constantFrom('', 'ALPHA', 'a.b', '*', '>', 'é', 1, null)
      .map((tenant) => (e) => ({ ...e, tenant })),
  ],
  ['tenant missing', fc.constant(({ tenant: _t, ...e }) => e)],
  [
    'model mismatch',
    fc.constantFrom('ngram-chat', 'hash-embed', 'nope').map((model) => (e) => ({ ...e, model })),
  ],
  ['model invalid', fc.constantFrom('', '.', '>', 1).map((model) => (e) => ({ ...e, model }))],
  [
    'deadline',
    fc.constantFrom(-1, 0, 1.5, 2 ** 60, '1', null).map((deadline) => (e) => ({ ...e, deadline })),
  ],
  ['priority', fc.constantFrom('urgent', '', 0).map((priority) => (e) => ({ ...e, priority }))],
  ['params', fc.constantFrom(null, [], 'x', 1).map((params) => (e) => ({ ...e, params }))],
  [
    'replyTo',
    fc
      .constantFrom('x', 'vigil.reply.*.>', '_INBOX_gateway.x', 'vigil.ctl.test.h.drain')
      .map((replyTo) => (e) => ({ ...e, replyTo })),
  ],
  [
    'input too deep',
    fc.integer({ min: 31, max: 200 }).map((depth) => (e) => {
      let input: unknown = 1;
      for (let i = 0; i < depth; i++) input = [input];
      return { ...e, input };
    }),
  ],
  ['extra fields', fc.constant((e) => ({ ...e, extra: 'x', constructor: 'c' }))],
  [
    'not a map',
    fc.constantFrom(null, 1, 'envelope', [1, 2]).map((v) => () => v as unknown as Fields),
  ],
];

/** Byte-level damage to an encoded envelope: truncation, corruption, huge declared lengths. */
function byteMutation(bytes: Uint8Array): fc.Arbitrary<{ mutation: string; bytes: Uint8Array }> {
  const at = fc.nat({ max: Math.max(0, bytes.length - 1) });
  const huge = [
    [0xdd, 0xff, 0xff, 0xff, 0xff], // array32 of 4 billion
    [0xdf, 0x7f, 0xff, 0xff, 0xff], // map32
    [0xdb, 0xff, 0xff, 0xff, 0xf0], // str32
    [0xc6, 0x7f, 0xff, 0xff, 0xff], // bin32
    [0xc9, 0xff, 0xff, 0xff, 0xff, 0x01], // ext32
    [0xd4, 0x01, 0x00], // fixext1
    [0xc1], // never used
  ];
  return fc.oneof(
    {
      weight: 3,
      arbitrary: at.map((k) => ({ mutation: 'truncated', bytes: bytes.subarray(0, k) })),
    },
    {
      weight: 3,
      arbitrary: fc.tuple(at, fc.integer({ min: 0, max: 255 })).map(([k, b]) => {
        const copy = Uint8Array.from(bytes);
        copy[k] = b;
        return { mutation: 'byte corrupted', bytes: copy };
      }),
    },
    {
      weight: 2,
      arbitrary: fc.tuple(at, fc.constantFrom(...huge)).map(([k, h]) => ({
        mutation: 'huge declared length',
        bytes: Uint8Array.from([...bytes.subarray(0, k), ...h, ...bytes.subarray(k)]),
      })),
    },
    {
      weight: 1,
      arbitrary: fc.uint8Array({ minLength: 1, maxLength: 8 }).map((tail) => ({
        mutation: 'trailing bytes',
        bytes: Uint8Array.from([...bytes, ...tail]),
      })),
    },
  );
}

/** Requests: a valid envelope, then field or byte damage, or random bytes. */
const requestCases: fc.Arbitrary<RequestCase> = fc
  .record({
    user: fc.constantFrom<'gateway' | 'service'>('gateway', 'service'),
    subjectId: taskIds,
    otherId: taskIds,
    env: envelope,
    fields: fc.oneof(...fieldMutations.map(([name, arb]) => arb.map((f) => ({ name, f })))),
    bytes: fc.constantFrom('none', 'none', 'damage', 'random'),
    seed: fc.nat(),
  })
  .chain(({ user, subjectId, otherId, env, fields, bytes }) => {
    const now = Date.now();
    const base: Fields = {
      v: ENVELOPE_VERSION,
      id: subjectId,
      tenant: env.tenant,
      model: 'echo',
      priority: env.priority,
      input: env.input,
      params: {},
      createdAt: now,
      deadline: now + env.deadlineMs,
    };
    const payload = encode(fields.f(base, otherId));
    const made = (mutation: string, out: Uint8Array): RequestCase => ({
      kind: 'request',
      user,
      subjectId,
      priority: env.priority,
      mutation,
      payloadHex: hex(out),
    });
    if (bytes === 'random') {
      return fc.uint8Array({ minLength: 0, maxLength: 200 }).map((b) => made('random bytes', b));
    }
    if (bytes === 'damage') {
      return byteMutation(payload).map(({ mutation, bytes: b }) =>
        made(`${fields.name}, ${mutation}`, b),
      );
    }
    return fc.constant(made(fields.name, payload));
  });

const replyCases: fc.Arbitrary<ReplyCase> = fc.oneof(
  fc
    .record({ target: fc.nat(1000), bytes: fc.uint8Array({ maxLength: 120 }) })
    .map(({ target, bytes }) => ({
      kind: 'reply' as const,
      mutation: 'random bytes',
      target,
      payloadHex: hex(bytes),
    })),
  fc
    .record({
      target: fc.nat(1000),
      idFrom: fc.constantFrom<'target' | 'other'>('target', 'other'),
      tenant: fc.constantFrom('alpha', 'beta', 'gamma'),
      state: fc.constantFrom('succeeded', 'failed', 'dead', 'running', 'bogus'),
      v: fc.constantFrom(1, 1, 2),
    })
    // A record for the waiting task, with its own tenant, in a final state, is a forgery no
    // shape check can tell from the truth: only actor hosts, trusted to write outcomes, may
    // publish on reply subjects (a separate test asserts the server refuses everyone else).
    .filter(
      (r) =>
        !(
          r.idFrom === 'target' &&
          r.tenant === 'alpha' &&
          r.v === 1 &&
          ['succeeded', 'failed', 'dead'].includes(r.state)
        ),
    )
    .map(({ target, ...record }) => ({
      kind: 'reply' as const,
      mutation: `record (${record.idFrom === 'target' ? 'its id' : "another task's id"}, tenant ${record.tenant}, ${record.state}, v${record.v})`,
      target,
      record,
    })),
);

const commandCases: fc.Arbitrary<CommandCase> = fc
  .record({
    command: fc.oneof(
      fc.constantFrom('restart', 'drain', 'restart', 'RESTART', 'stop', 'kill'),
      fc
        .string({ unit: 'binary-ascii', minLength: 1, maxLength: 12 })
        .filter((s) => /^[!-~]+$/.test(s) && !/[.*>]/.test(s)),
    ),
    body: fc.oneof(
      fc.json({ maxDepth: 3 }),
      fc.constantFrom(
        '',
        'null',
        '{}',
        '{"model":"nope"}',
        '{"model":1}',
        '{"model":"' + 'm'.repeat(65) + '"}',
        '{"reason":"' + 'r'.repeat(513) + '"}',
        '{"__proto__":{"model":"echo"}}',
        '\u00ff\u00fe',
        '{"model":"echo"',
      ),
      fc.string({ unit: 'binary', maxLength: 60 }),
    ),
    host: fc.constantFrom<'real' | 'other'>('real', 'real', 'real', 'other'),
  })

  .map((c) => ({ kind: 'command' as const, ...safeCommand(c.command, c.body), host: c.host }));

/**
 * A command that a real host would carry out (a valid drain, a restart of a model it serves) is
 * not junk: it would stop or restart the host under test. Such bodies are made unreadable.
 */
function safeCommand(command: string, body: string): { command: string; body: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return { command, body };
  }
  const ok = hostCommandSchema.safeParse(parsed);
  if (
    ok.success &&
    (command === 'drain' ||
      (command === 'restart' &&
        ['echo', 'ngram-chat', 'hash-embed'].includes(String(ok.data.model))))
  ) {
    return { command, body: `${body}\u0000` };
  }
  return { command, body };
}

const eventCases: fc.Arbitrary<EventCase> = fc
  .record({
    tenant: fc.constantFrom('alpha', 'beta', 'x'),
    payload: fc.oneof(
      fc.uint8Array({ maxLength: 100 }),
      fc
        .record({
          v: fc.constantFrom(1, 2),
          type: fc.constantFrom('succeeded', 'dead', 'bogus'),
          taskId: taskIds,
        })
        .map((e) => encode(e)),
    ),
  })

  .map(({ tenant, payload }) => ({ kind: 'event' as const, tenant, payloadHex: hex(payload) }));

/** Every kind of hostile message: requests most, as they carry the most to go wrong. */
export const natsCases: fc.Arbitrary<NatsCase> = fc.oneof(
  { weight: 12, arbitrary: requestCases },
  { weight: 4, arbitrary: replyCases },
  { weight: 3, arbitrary: commandCases },
  { weight: 1, arbitrary: eventCases },
);

/**
 * Who owns a request, when that can be told: the envelope decodes within the codec's limits to a
 * map whose `tenant` is a name. The task id is the subject's last token, always.
 */
export function recoverableTenant(payload: Uint8Array): string | undefined {
  let value: unknown;
  try {
    value = decode(payload, { maxDepth: 1000 });
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const tenant = (value as { tenant?: unknown }).tenant;
  return typeof tenant === 'string' && isNameToken(tenant) ? tenant : undefined;
}

/** True for a subject id token that names a task. */
export const isTaskId = (id: string): boolean => TASK_ID.test(id);
