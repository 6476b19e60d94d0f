/**
 * Hostile HTTP requests, generated with fast-check: bodies (malformed JSON and UTF-8, depth, huge
 * numbers, `__proto__` keys, sizes around the limit, wrong content types), headers (oversize,
 * CR/LF, non-ASCII, duplicates, conflicting framing), paths and model names (`.`, `*`, `>`,
 * `$JS.API...`, percent-encoding, 5,000 characters), every route and method, every OpenAI field
 * at and beyond its bounds, and keys. Each case is plain data, so a failure prints it whole.
 */
import fc from 'fast-check';

/** Which API key a case presents. */
export type KeyChoice = 'alpha' | 'beta' | 'none' | 'wrong';

/** One request. `raw` cases go over a bare socket byte for byte; the others through fetch. */
export interface HttpCase {
  category: string;
  transport: 'fetch' | 'raw';
  method: string;
  /** The request target as sent (raw: any bytes, as latin1). */
  path: string;
  headers: [string, string][];
  /** The body: text, or bytes as latin1 when `binary`. */
  body?: string;
  binary?: boolean;
  key: KeyChoice;
  /** Raw only: leave Content-Length to the case's own headers. */
  ownFraming?: boolean;
  /** The route it aims at, for judging (see `http-judge.ts`). */
  route: string;
  /** For echo infer calls: the input the answer must echo. */
  echoInput?: unknown;
}

/** Limits of the edge the cases are made for. */
export interface HttpLimits {
  maxBodyBytes: number;
}

const MODELS = ['echo', 'ngram-chat', 'hash-embed'];
const WEIRD_NAMES = [
  '.',
  '..',
  '*',
  '>',
  '$JS.API.STREAM.LIST',
  '$JS.API.>',
  'echo.evil',
  'echo*',
  'ECHO',
  'echo ',
  '%2E',
  '%2E%2E',
  '%2F',
  '%3E',
  '%2A',
  '%00',
  '%',
  '%zz',
  '%C0%AE',
  'ech%6F',
  '_INBOX_gateway.x',
  'vigil.req.test.echo',
  'a'.repeat(64),
  'a'.repeat(65),
  'a'.repeat(5000),
  'é',
  '🙂',
];

const modelName = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...MODELS) },
  { weight: 3, arbitrary: fc.constantFrom(...WEIRD_NAMES) },
  { weight: 1, arbitrary: fc.string({ maxLength: 80 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
);

/** A JSON value with hostile corners: deep, huge numbers, prototype keys, odd strings. */
const hostileJsonText = (limits: HttpLimits): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.json({ maxDepth: 4 }) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.integer({ min: 1, max: 120 }), fc.constantFrom('[', '{"a":'))
        .map(
          ([depth, open]) => open.repeat(depth) + '1' + (open === '[' ? ']' : '}').repeat(depth),
        ),
    },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 500, max: Math.floor(limits.maxBodyBytes / 2) - 20 })
        .map((depth) => '['.repeat(depth) + ']'.repeat(depth)),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        '1e400',
        '-1e400',
        '1e-400',
        '123456789012345678901234567890',
        '-0',
        '9007199254740993',
        '0.1e-99999',
      ),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString'),
          fc.json({ maxDepth: 2 }),
        )
        .map(([key, value]) => `{"${key}":${value},"x":1}`),
    },
    {
      weight: 1,
      arbitrary: fc.string({ unit: 'grapheme', maxLength: 200 }).map((s) => JSON.stringify(s)),
    },
  );

/** Valid infer bodies around a hostile input, with the other fields at and beyond their bounds. */
const inferBody = (limits: HttpLimits) =>
  fc
    .record(
      {
        input: hostileJsonText(limits),
        params: fc.oneof(
          fc.constant('{}'),
          fc.json({ maxDepth: 2 }),
          fc.constant('{"__proto__":{"a":1}}'),
        ),
        priority: fc.constantFrom('"interactive"', '"batch"', '"urgent"', '1', 'null'),
        deadline_ms: fc.constantFrom(
          '1',
          '1000',
          '86400000',
          '86400001',
          '0',
          '-1',
          '1.5',
          '1e400',
          '"10"',
          'null',
        ),
      },
      { requiredKeys: ['input'] },
    )
    .map(
      (fields) =>
        `{${Object.entries(fields)
          .map(([k, v]) => `"${k}":${v}`)
          .join(',')}}`,
    );

/** Bodies that are not a valid request: broken JSON, broken UTF-8, wrong shapes. */
const brokenBody = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc
    .json({ maxDepth: 3 })
    .chain((json) =>
      fc.nat({ max: Math.max(0, json.length - 1) }).map((cut) => json.slice(0, cut)),
    ),
  fc.constantFrom(
    '',
    '{',
    '{"input":',
    '{"input":1,}',
    "{'input':1}",
    'null',
    '[]',
    '"input"',
    '{"input":NaN}',
    '{"input":undefined}',
    '\ufeff{"input":1}',
  ),
);

const invalidUtf8 = fc
  .uint8Array({ minLength: 1, maxLength: 64 })
  .map((bytes) => `{"input":"${Buffer.from([0xc3, 0x28, 0xff, ...bytes]).toString('latin1')}"}`);

const contentType = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=utf-16',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/msgpack',
  '',
  '*/*',
  'application/json, text/plain',
);

const prefer = fc.constantFrom(
  'respond-async',
  'respond-async',
  'wait=1',
  'wait=0',
  'wait=99999999',
  'wait=-1',
  'wait=abc',
  '',
);

/** Bodies sent to the infer route through fetch. */
function bodyCases(limits: HttpLimits): fc.Arbitrary<HttpCase> {
  return fc
    .record({
      body: fc.oneof(
        { weight: 5, arbitrary: inferBody(limits) },
        { weight: 2, arbitrary: brokenBody },
      ),
      model: fc.constantFrom('echo', 'echo', 'ngram-chat', 'hash-embed'),
      contentType,
      prefer,
      key: fc.constantFrom<KeyChoice>('alpha', 'alpha', 'alpha', 'beta'),
    })
    .map(({ body, model, contentType: type, prefer: pref, key }) => {
      const parsed = safeParse(body);
      const headers: [string, string][] = [];
      if (type) headers.push(['Content-Type', type]);
      if (pref) headers.push(['Prefer', pref]);
      return {
        category: 'body',
        transport: 'fetch',
        method: 'POST',
        path: `/v1/models/${model}/infer`,
        headers,
        body,
        key,
        route: 'infer',
        ...(model === 'echo' && isInferBody(parsed) ? { echoInput: parsed.input } : {}),
      } satisfies HttpCase;
    });
}

/** Bodies around the size limit and broken UTF-8, raw so the lengths are exactly as written. */
function sizeCases(limits: HttpLimits): fc.Arbitrary<HttpCase> {
  const sized = fc.integer({ min: -2, max: 2 }).map((delta) => {
    const frame = '{"input":""}';
    const body = `{"input":"${'a'.repeat(limits.maxBodyBytes + delta - frame.length)}"}`;
    return { body, binary: false };
  });
  return fc
    .oneof(
      sized,
      invalidUtf8.map((body) => ({ body, binary: true })),
    )
    .map(({ body, binary }) => ({
      category: 'body-size',
      transport: 'raw',
      method: 'POST',
      path: '/v1/models/echo/infer',
      headers: [
        ['Content-Type', 'application/json'],
        ['Prefer', 'respond-async'],
      ],
      body,
      binary,
      key: 'alpha',
      route: 'infer',
    }));
}

const headerName = fc.oneof(
  fc.constantFrom(
    'X-Test',
    'Authorization',
    'Content-Type',
    'Content-Length',
    'Transfer-Encoding',
    'Prefer',
    'Idempotency-Key',
    'Host',
    'Expect',
    'Connection',
    'Upgrade',
    'Traceparent',
    'X-Request-Id',
  ),
  fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 20 }),
);

const headerValue = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc
    .string({ unit: 'binary', maxLength: 40 })
    .map((s) => Buffer.from(s, 'utf8').toString('latin1')),
  fc.constantFrom(
    'a\rb',
    'a\nb',
    'a\r\nX-Injected: 1',
    ' folded\r\n continued',
    '\u00e9t\u00e9',
    '\x00',
    '\x7f',
    'chunked',
    'gzip, chunked',
    '100-continue',
    'websocket',
    '-1',
    '99999999999999999999',
    '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  ),
  fc.integer({ min: 8000, max: 80_000 }).map((n) => 'v'.repeat(n)),
);

/** Requests whose headers are hostile: sent raw, with a small valid echo body. */
function headerCases(): fc.Arbitrary<HttpCase> {
  return fc
    .record({
      extra: fc.array(fc.tuple(headerName, headerValue), { minLength: 1, maxLength: 4 }),
      duplicate: fc.boolean(),
      key: fc.constantFrom<KeyChoice>('alpha', 'alpha', 'none', 'wrong'),
    })
    .map(({ extra, duplicate, key }) => {
      const headers: [string, string][] = [
        ['Content-Type', 'application/json'],
        ['Prefer', 'respond-async'],
        ...extra,
      ];
      if (duplicate && extra[0]) headers.push(extra[0]);
      return {
        category: 'header',
        transport: 'raw',
        method: 'POST',
        path: '/v1/models/echo/infer',
        headers,
        body: '{"input":"headers"}',
        key,
        route: 'infer',
      } satisfies HttpCase;
    });
}

const ROUTES: [string, string][] = [
  ['/v1/models/{m}/infer', 'infer'],
  ['/v1/models/{m}', 'models'],
  ['/v1/models', 'models'],
  ['/v1/tasks/{t}', 'task'],
  ['/v1/tasks/{t}/events', 'events'],
  ['/v1/tasks/{t}/cancel', 'task'],
  ['/v1/chat/completions', 'chat'],
  ['/v1/completions', 'completions'],
  ['/v1/embeddings', 'embeddings'],
  ['/v1/admin/dead-letters', 'other'],
  ['/v1/admin/dead-letters/{t}/replay', 'other'],
  ['/healthz', 'health'],
  ['/readyz', 'health'],
  ['/', 'other'],
  ['/v1', 'other'],
  ['/v2/models', 'other'],
];

const METHODS = [
  'GET',
  'POST',
  'PUT',
  'PATCH',
  'DELETE',
  'HEAD',
  'OPTIONS',
  'TRACE',
  'PROPFIND',
  'PURGE',
  'SEARCH',
  'get',
  'FOO',
  'G ET',
];

const taskId = fc.oneof(
  fc.stringMatching(/^[a-z2-7]{26}$/),
  fc.constantFrom(
    '.',
    '..',
    '*',
    '>',
    '%2E',
    '%2F',
    'x'.repeat(5000),
    '$JS.API.STREAM.INFO',
    'AAAAAAAAAAAAAAAAAAAAAAAAAA',
  ),
  fc.string({ maxLength: 40 }),
);

const PERCENT = (s: string) =>
  [...Buffer.from(s, 'utf8')]
    .map((b) =>
      b > 0x20 && b < 0x7f && b !== 0x25 && b !== 0x3f && b !== 0x23
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, '0')}`,
    )
    .join('');

/** Every route with every method, and paths and model names that are not names. */
function routeCases(): fc.Arbitrary<HttpCase> {
  return fc
    .record({
      route: fc.constantFrom(...ROUTES),
      method: fc.constantFrom(...METHODS),
      model: modelName,
      task: taskId,
      encode: fc.constantFrom('percent', 'percent', 'raw-bytes'),
      query: fc.constantFrom(
        '',
        '?a=1',
        '?limit=999999',
        '?model=..',
        '?%zz',
        '?x=' + 'q'.repeat(3000),
      ),
      key: fc.constantFrom<KeyChoice>('alpha', 'alpha', 'beta', 'none'),
    })
    .map(({ route: [template, route], method, model, task, encode, query, key }) => {
      const fill = (s: string) =>
        encode === 'percent'
          ? PERCENT(s)
          : Buffer.from(s, 'utf8')
              .toString('latin1')
              .replace(/[ \r\n]/g, '_');
      const path = template.replace('{m}', fill(model)).replace('{t}', fill(task)) + query;
      const hasBody = method === 'POST' || method === 'PUT' || method === 'PATCH';
      return {
        category: 'route',
        transport: 'raw',
        method,
        path,
        headers: hasBody
          ? [
              ['Content-Type', 'application/json'],
              ['Prefer', 'respond-async'],
            ]
          : [],
        ...(hasBody
          ? { body: '{"input":"route","model":"echo","messages":[{"role":"user","content":"hi"}]}' }
          : {}),
        key,
        route,
      } satisfies HttpCase;
    });
}

const MAX_TOKENS = 4096;
const num = (...values: (number | string)[]) => fc.constantFrom(...values.map(String));

/** The OpenAI routes' fields at and beyond their bounds. */
function openAiCases(): fc.Arbitrary<HttpCase> {
  const content = fc.oneof(
    fc.string({ maxLength: 60 }).map((s) => JSON.stringify(s)),
    fc
      .constantFrom(32_768, 32_769, 100_000)
      .map((n) => JSON.stringify('w '.repeat(Math.floor(n / 2)))),
    fc.constantFrom(
      '[{"type":"text","text":"hi"}]',
      '[{"type":"image_url","image_url":"x"}]',
      '[]',
      'null',
      '1',
      '{}',
    ),
  );
  const message = fc
    .record({
      role: fc.constantFrom(
        '"user"',
        '"system"',
        '"developer"',
        '"assistant"',
        '"tool"',
        '"USER"',
        '1',
      ),
      content,
    })
    .map(({ role, content: c }) => `{"role":${role},"content":${c}}`);
  const chat = fc
    .record(
      {
        model: fc.constantFrom(
          '"ngram-chat"',
          '"hash-embed"',
          '"echo"',
          '"nope"',
          '"."',
          '">"',
          '1',
          'null',
        ),
        messages: fc.oneof(
          fc.array(message, { minLength: 0, maxLength: 3 }).map((m) => `[${m.join(',')}]`),
          fc
            .constantFrom(64, 65, 200)
            .map((n) => `[${Array(n).fill('{"role":"user","content":"a"}').join(',')}]`),
          fc.constantFrom('null', '"hi"', '{}'),
        ),
        max_tokens: num(
          0,
          1,
          16,
          MAX_TOKENS,
          MAX_TOKENS + 1,
          -1,
          1.5,
          2 ** 53,
          '1e400',
          '"10"',
          'null',
        ),
        max_completion_tokens: num(0, 1, MAX_TOKENS + 1, 'null'),
        temperature: num(-0.01, 0, 1, 2, 2.01, '1e400', '"1"', 'null'),
        seed: num(0, -1, 1.5, 2 ** 53 + 2, '"s"', 'null'),
        n: num(1, 2, 8, 9, 129, 0, 1.5, 'null'),
        stream: fc.constantFrom('true', 'false', '"true"', 'null'),
      },
      { requiredKeys: ['model', 'messages'] },
    )
    .map((f) => ({ route: 'chat', path: '/v1/chat/completions', body: objectText(f) }));
  const embeddings = fc
    .record(
      {
        model: fc.constantFrom('"hash-embed"', '"ngram-chat"', '"nope"', '1'),
        input: fc.oneof(
          fc.string({ maxLength: 60 }).map((s) => JSON.stringify(s)),
          fc.constantFrom(256, 257, 1000).map((n) => JSON.stringify(Array(n).fill('word'))),
          fc.constantFrom(32_768, 32_769).map((n) => JSON.stringify('e'.repeat(n))),
          fc.constantFrom('[]', '[""]', '[1,2,3]', '[[1],[2]]', '[1e400]', 'null', '{}', '[null]'),
        ),
        encoding_format: fc.constantFrom('"float"', '"base64"', '"hex"', 'null'),
        dimensions: num(0, 1, 8, 4096, 4097, -1, 1.5, 2 ** 53, '"8"'),
      },
      { requiredKeys: ['model', 'input'] },
    )
    .map((f) => ({ route: 'embeddings', path: '/v1/embeddings', body: objectText(f) }));
  const completions = fc
    .record(
      {
        model: fc.constantFrom('"ngram-chat"', '"hash-embed"', '"nope"', '1'),
        prompt: fc.oneof(
          fc.string({ maxLength: 60 }).map((s) => JSON.stringify(s)),
          fc.constantFrom(
            '["one"]',
            '["one","two"]',
            '[[1,2]]',
            '[1,2]',
            '[]',
            'null',
            '{}',
            JSON.stringify('p'.repeat(32_769)),
          ),
        ),
        max_tokens: num(0, 1, 16, MAX_TOKENS + 1, -1, 'null'),
        echo: fc.constantFrom('true', 'false', 'null'),
        suffix: fc.constantFrom('"s"', '""', 'null'),
        best_of: num(1, 2, 0, 21, 'null'),
        logprobs: num(0, 1, 5, 6, 'true', 'null'),
        stream: fc.constantFrom('true', 'false', 'null'),
        top_p: num(0.5, 1, 1.01, 'null'),
        stop: fc.constantFrom('"."', '[".","!"]', '["a","b","c","d","e"]', 'null'),
        bogus_field: fc.constantFrom('1', '"x"'),
      },
      { requiredKeys: ['model', 'prompt'] },
    )
    .map((f) => ({ route: 'completions', path: '/v1/completions', body: objectText(f) }));
  return fc.oneof(chat, embeddings, completions).map(({ route, path, body }) => ({
    category: 'openai',
    transport: 'fetch',
    method: 'POST',
    path,
    headers: [['Content-Type', 'application/json']],
    body,
    key: 'alpha',
    route,
  }));
}

const lastEventId = fc.oneof(
  fc.constantFrom(
    '0',
    '1',
    '3',
    '-1',
    '1.5',
    '9'.repeat(20),
    'abc',
    '1.1.1.1',
    '1.1.1.0',
    '5.1.10.zzzzzzz',
    '5.1.10.zzzzzzzz',
    '1.999999.999999999.a',
    '3.1.0.0.1',
    '3.1.4.abc.7',
    '3.1.4.abc.9999',
    ' 1',
    '1.1.1.1' + 'x'.repeat(5000),
  ),
  fc.stringMatching(/^[0-9]{1,3}\.[0-9]\.[0-9]{1,3}\.[0-9a-z]{1,7}$/),
  // What fetch sends: printable ASCII (control characters are the raw cases' business).
  fc.string({ unit: 'binary-ascii', maxLength: 30 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')),
);

/**
 * Streams and their resumption: the native `stream` flag, OpenAI streams with keys and
 * `Last-Event-ID`s (valid cursors, forged ones, junk), and event reads of tasks that do not exist
 * or are not the caller's. Every stream is read to its end and judged as a stream.
 */
function streamCases(): fc.Arbitrary<HttpCase> {
  const native = fc
    .record({
      model: fc.constantFrom('ngram-chat', 'echo'),
      stream: fc.constantFrom('true', 'false', '"true"', 'null', '1'),
      lastEventId: fc.option(lastEventId, { nil: undefined }),
      async: fc.boolean(),
    })
    .map(({ model, stream, lastEventId: id, async }) => ({
      route: 'infer',
      method: 'POST',
      path: `/v1/models/${model}/infer`,
      body: `{"input":"stream me","params":{"max_tokens":12},"stream":${stream}}`,
      headers: [
        ['Content-Type', 'application/json'],
        ...(async ? [['Prefer', 'respond-async']] : []),
        ...(id === undefined ? [] : [['Last-Event-ID', id]]),
      ] as [string, string][],
    }));
  const openai = fc
    .record({
      key: fc.option(fc.stringMatching(/^[a-z0-9]{1,12}$/), { nil: undefined }),
      lastEventId: fc.option(lastEventId, { nil: undefined }),
      includeUsage: fc.constantFrom('true', 'false', 'null', '"yes"', undefined),
      stream: fc.constantFrom('true', 'true', 'false'),
      n: fc.constantFrom(undefined, '1', '2', '3', '9'),
    })
    .map(({ key, lastEventId: id, includeUsage, stream, n }) => ({
      route: 'chat',
      method: 'POST',
      path: '/v1/chat/completions',
      body: objectText({
        model: '"ngram-chat"',
        messages: '[{"role":"user","content":"stream the sea"}]',
        max_tokens: '12',
        n,
        stream,
        stream_options:
          includeUsage === undefined ? undefined : `{"include_usage":${includeUsage}}`,
      }),
      headers: [
        ['Content-Type', 'application/json'],
        ...(key === undefined ? [] : [['Idempotency-Key', `stream-${key}`]]),
        ...(id === undefined ? [] : [['Last-Event-ID', id]]),
      ] as [string, string][],
    }));
  const events = fc
    .record({ task: taskId, lastEventId: fc.option(lastEventId, { nil: undefined }) })
    .map(({ task, lastEventId: id }) => ({
      route: 'events',
      method: 'GET',
      path: `/v1/tasks/${PERCENT(task)}/events`,
      body: undefined,
      headers: id === undefined ? [] : [['Last-Event-ID', id] satisfies [string, string]],
    }));
  return fc
    .tuple(fc.oneof(native, openai, events), fc.constantFrom<KeyChoice>('alpha', 'alpha', 'beta'))
    .map(([c, key]) => ({
      category: 'stream',
      transport: 'fetch',
      method: c.method,
      path: c.path,
      headers: c.headers,
      ...(c.body === undefined ? {} : { body: c.body }),
      key,
      route: c.route,
    }));
}

function objectText(fields: Record<string, string | undefined>): string {
  const parts = Object.entries(fields).flatMap(([k, v]) =>
    v === undefined ? [] : [`"${k}":${v}`],
  );
  return `{${parts.join(',')}}`;
}

/** Every kind of hostile request, in proportions that give each category hundreds per 1,000. */
export function httpCases(limits: HttpLimits): fc.Arbitrary<HttpCase> {
  return fc.oneof(
    { weight: 4, arbitrary: bodyCases(limits) },
    { weight: 1, arbitrary: sizeCases(limits) },
    { weight: 2, arbitrary: headerCases() },
    { weight: 3, arbitrary: routeCases() },
    { weight: 3, arbitrary: openAiCases() },
    { weight: 2, arbitrary: streamCases() },
  );
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isInferBody(value: unknown): value is { input: unknown } {
  return typeof value === 'object' && value !== null && 'input' in value;
}
