/**
 * Unit tests for the built-in model runtimes. Each test states a property of the real model (no
 * mocks): embedding geometry, chat determinism and streaming, echo fault gating.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ErrorCode,
  ModelKind,
  RetryableError,
  TerminalError,
  ValidationError,
} from '../../protocol/index.js';
import type { ChatOutput, EmbeddingOutput } from '../../protocol/index.js';
import {
  MIN_CHAT_TOKENS_BEFORE_STOP,
  checkChatOutput,
  createBuiltinModels,
  createEchoModel,
  createHashEmbeddingModel,
  createNgramChatModel,
} from '../../actors/index.js';
import type { ModelRunContext, ModelRuntime } from '../../actors/index.js';

const ctx = (): ModelRunContext => ({ signal: new AbortController().signal });

async function embed(
  model: ModelRuntime,
  input: unknown,
  params: Record<string, unknown> = {},
): Promise<EmbeddingOutput> {
  return (await model.run(input, params, ctx())) as EmbeddingOutput;
}

async function chat(
  model: ModelRuntime,
  input: unknown,
  params: Record<string, unknown> = {},
  context: ModelRunContext = ctx(),
): Promise<ChatOutput> {
  return (await model.run(input, params, context)) as ChatOutput;
}

/** Chat run that also collects the streamed pieces. */
async function chatStream(
  model: ModelRuntime,
  input: unknown,
  params: Record<string, unknown> = {},
): Promise<{ output: ChatOutput; pieces: string[] }> {
  const pieces: string[] = [];
  const output = await chat(model, input, params, {
    signal: new AbortController().signal,
    onToken: (piece) => pieces.push(piece),
  });
  return { output, pieces };
}

function dot(a: readonly number[], b: readonly number[]): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i] ?? 0) * (b[i] ?? 0);
  return sum;
}

function norm(a: readonly number[]): number {
  return Math.sqrt(dot(a, a));
}

/** Asserts that `promise` rejects with an instance of `kind`, then runs `check` on the error. */
async function rejectsWith<E extends Error>(
  promise: Promise<unknown>,
  kind: abstract new (...args: never[]) => E,
  check: (err: E) => void = () => {},
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof kind, `expected ${kind.name}, got ${String(err)}`);
    check(err);
    return true;
  });
}

function rejectsValidation(promise: Promise<unknown>, path: string): Promise<void> {
  return rejectsWith(promise, ValidationError, (err) => {
    assert.equal(err.path, path);
    assert.equal(err.code, ErrorCode.InvalidRequest);
    assert.equal(err.retryable, false);
  });
}

describe('hash-embed', () => {
  const model = createHashEmbeddingModel();

  test('identifies itself as an embedding model', () => {
    assert.equal(model.name, 'hash-embed');
    assert.equal(model.version, 'v1');
    assert.equal(model.kind, ModelKind.Embedding);
  });

  test('returns unit-length float32 vectors of the default 384 dimensions', async () => {
    const out = await embed(model, 'The quick brown fox jumps over the lazy dog.');
    assert.equal(out.dimensions, 384);
    assert.equal(out.embeddings.length, 1);
    const vector = out.embeddings[0] ?? [];
    assert.equal(vector.length, 384);
    assert.ok(Math.abs(norm(vector) - 1) < 1e-5, `norm ${norm(vector)}`);
    for (const x of vector) assert.equal(x, Math.fround(x));
  });

  test('is deterministic across calls and instances, and keeps batch order', async () => {
    const texts = ['alpha beta gamma', 'the tortoise and the hare', 'liberty'];
    const first = await embed(model, texts);
    const again = await embed(createHashEmbeddingModel(), texts);
    assert.deepEqual(again, first);
    for (const [i, text] of texts.entries()) {
      const single = await embed(model, text);
      assert.deepEqual(single.embeddings[0], first.embeddings[i]);
    }
  });

  test('normalises case and whitespace', async () => {
    const a = await embed(model, '  Hello\n\tWORLD  ');
    const b = await embed(model, 'hello world');
    assert.deepEqual(a.embeddings, b.embeddings);
  });

  test('honours params.dimensions within 32..4096', async () => {
    for (const dimensions of [32, 100, 4096]) {
      const out = await embed(model, 'some text', { dimensions });
      assert.equal(out.dimensions, dimensions);
      assert.equal(out.embeddings[0]?.length, dimensions);
      assert.ok(Math.abs(norm(out.embeddings[0] ?? []) - 1) < 1e-5);
    }
    for (const dimensions of [31, 4097, 100.5, '64', null]) {
      await rejectsValidation(embed(model, 'x', { dimensions }), 'params.dimensions');
    }
  });

  test('uses options.dimensions as the default and rejects bad options', async () => {
    const small = createHashEmbeddingModel({ dimensions: 64 });
    assert.equal((await embed(small, 'x')).dimensions, 64);
    assert.throws(() => createHashEmbeddingModel({ dimensions: 16 }), ValidationError);
  });

  test('similar texts are closer than unrelated ones', async () => {
    const cases: [string, string, string][] = [
      [
        'The fox jumped over the fence.',
        'A fox jumps over a fence.',
        'Interest rates rose sharply this quarter.',
      ],
      [
        'How do I reset my password?',
        'I forgot my password and need to reset it.',
        'The orchestra played a symphony by Brahms.',
      ],
      [
        'NATS JetStream stores messages durably.',
        'JetStream keeps stored messages in NATS streams.',
        'Bake the bread until the crust is golden.',
      ],
    ];
    for (const [anchor, similar, unrelated] of cases) {
      const out = await embed(model, [anchor, similar, unrelated]);
      const [a, s, u] = out.embeddings;
      const near = dot(a ?? [], s ?? []);
      const far = dot(a ?? [], u ?? []);
      console.log(`cosine similar=${near.toFixed(3)} unrelated=${far.toFixed(3)} :: ${anchor}`);
      assert.ok(near > far + 0.2, `${near} should exceed ${far} by a margin`);
    }
  });

  test('an empty string gives a zero vector and prompt_tokens counts words', async () => {
    const out = await embed(model, ['', 'the quick brown fox', '  ...  ']);
    assert.deepEqual(out.embeddings[0], new Array<number>(384).fill(0));
    assert.deepEqual(out.embeddings[2], new Array<number>(384).fill(0));
    for (const vector of out.embeddings) for (const x of vector) assert.ok(Number.isFinite(x));
    assert.equal(out.usage.prompt_tokens, 4);
  });

  test('rejects bad input with ValidationError', async () => {
    await rejectsValidation(embed(model, 42), 'input');
    await rejectsValidation(embed(model, { text: 'x' }), 'input');
    await rejectsValidation(embed(model, []), 'input');
    await rejectsValidation(embed(model, new Array<string>(257).fill('x')), 'input');
    await rejectsValidation(embed(model, ['ok', 7]), 'input.1');
    await rejectsValidation(embed(model, 'x'.repeat(32_769)), 'input');
    // The limits themselves are accepted.
    assert.equal((await embed(model, new Array<string>(256).fill('x'))).embeddings.length, 256);
    assert.equal((await embed(model, 'x'.repeat(32_768))).embeddings.length, 1);
  });

  test('an aborted signal stops the run with a retryable deadline error', async () => {
    const controller = new AbortController();
    controller.abort();
    await rejectsWith(model.run('text', {}, { signal: controller.signal }), RetryableError, (err) =>
      assert.equal(err.code, ErrorCode.DeadlineExceeded),
    );
  });
});

describe('ngram-chat', () => {
  const started = performance.now();
  const model = createNgramChatModel();
  const trainingMs = performance.now() - started;

  // A corpus small enough that the right answer is known by hand.
  const tiny = createNgramChatModel({
    corpus: 'The cat sat on the mat.\n\nThe dog ran in the park.\n\nA bird sang in the tree.',
  });

  test('trains on the shipped corpus well under a second', () => {
    console.log(`training took ${trainingMs.toFixed(1)} ms: ${model.description}`);
    assert.equal(model.name, 'ngram-chat');
    assert.equal(model.version, 'v1');
    assert.equal(model.kind, ModelKind.Chat);
    assert.ok(trainingMs < 1000, `training took ${trainingMs} ms`);
  });

  test('the same input and params give the same text, with or without a seed', async () => {
    const prompt = 'Tell me about the fox and the crow.';
    for (const params of [{ seed: 7 }, { seed: 7, temperature: 1.3 }, {}, { temperature: 0 }]) {
      const a = await chat(model, prompt, params);
      const b = await chat(createNgramChatModel(), prompt, params);
      assert.deepEqual(a, b);
    }
    // A string prompt is one user message.
    const asMessages = await chat(model, { messages: [{ role: 'user', content: prompt }] });
    assert.deepEqual(asMessages, await chat(model, prompt));
  });

  test('different seeds usually give different text', async () => {
    const texts = new Set<string>();
    for (let seed = 1; seed <= 8; seed++) {
      texts.add((await chat(model, 'Tell me a story.', { seed })).text);
    }
    console.log(`8 seeds gave ${texts.size} distinct answers`);
    assert.ok(texts.size >= 4, `only ${texts.size} distinct answers`);
  });

  test('streamed pieces concatenate to the text, one piece per token', async () => {
    for (let seed = 1; seed <= 10; seed++) {
      const { output, pieces } = await chatStream(model, 'What did the wolf say?', {
        seed,
        max_tokens: 200,
      });
      assert.equal(pieces.join(''), output.text);
      assert.equal(pieces.length, output.usage.completion_tokens);
      for (const piece of pieces) assert.ok(piece.length > 0);
    }
  });

  test('n answers one after another, each streamed under its index, usage summing all', async () => {
    const params = { seed: 3, temperature: 1, max_tokens: 40 };
    const single = await chat(model, 'What did the wolf say?', params);
    const streamed: { piece: string; choice: number }[] = [];
    const output = await chat(
      model,
      'What did the wolf say?',
      { ...params, n: 3 },
      {
        signal: new AbortController().signal,
        onToken: (piece, choice = 0) => streamed.push({ piece, choice }),
      },
    );
    assert.equal(checkChatOutput(output), undefined);
    const choices = output.choices!;
    assert.equal(choices.length, 3);
    assert.deepEqual(choices[0], { text: single.text, finish_reason: single.finish_reason });
    assert.equal(output.text, single.text, 'the first answer is the answer');
    assert.equal(new Set(choices.map((c) => c.text)).size, 3);
    // Answers never interleave: the choice index only grows.
    const order = streamed.map((s) => s.choice);
    assert.deepEqual(
      order,
      [...order].sort((a, b) => a - b),
    );
    for (const [i, choice] of choices.entries()) {
      const pieces = streamed.filter((s) => s.choice === i).map((s) => s.piece);
      assert.equal(pieces.join(''), choice.text);
    }
    assert.equal(output.usage.completion_tokens, streamed.length);
    // n: 1 is one answer with no list; more than the cap is refused.
    assert.equal((await chat(model, 'x', { ...params, n: 1 })).choices, undefined);
    await rejectsValidation(chat(model, 'x', { n: 9 }), 'params.n');
    await rejectsValidation(chat(model, 'x', { n: 0 }), 'params.n');
  });

  test('detokenises: no space before punctuation, capitalised sentence starts', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const { text } = await chat(model, 'Speak of liberty and the people.', {
        seed,
        max_tokens: 300,
      });
      assert.doesNotMatch(text, /\s[.,;:!?]/, text);
      assert.doesNotMatch(text, /[.!?] \p{Ll}/u, text);
      assert.doesNotMatch(text, /^\s|\s$|\s{2}/, text);
      assert.match(text, /^\p{Lu}/u, text);
    }
  });

  test('max_tokens is respected and finish_reason says why it stopped', async () => {
    for (const max_tokens of [1, 5, 17, 100, 1024]) {
      for (let seed = 1; seed <= 5; seed++) {
        const { output, pieces } = await chatStream(model, 'The river', {
          max_tokens,
          seed,
          temperature: 2,
        });
        assert.ok(pieces.length <= max_tokens, `${pieces.length} > ${max_tokens}`);
        if (output.finish_reason === 'length') {
          assert.equal(pieces.length, max_tokens);
        } else {
          assert.match(output.text, /[.!?]$/);
          assert.ok(pieces.length >= MIN_CHAT_TOKENS_BEFORE_STOP);
        }
      }
    }
    const one = await chat(model, 'The river', { max_tokens: 1 });
    assert.equal(one.finish_reason, 'length');
    assert.equal(one.usage.completion_tokens, 1);
  });

  test('prompt words steer the answer', async () => {
    // In the tiny corpus only `dog` is followed by `ran`, and only `cat` by `sat`.
    assert.equal(
      (await chat(tiny, 'Tell me about the dog', { temperature: 0 })).text.split(' ')[0],
      'Ran',
    );
    assert.equal(
      (await chat(tiny, 'What about a cat?', { temperature: 0 })).text.split(' ')[0],
      'Sat',
    );
    // The last user message is the one that counts.
    const multi = await chat(
      tiny,
      {
        messages: [
          { role: 'system', content: 'Answer about the bird.' },
          { role: 'user', content: 'the dog' },
          { role: 'assistant', content: 'The dog ran.' },
          { role: 'user', content: 'and the cat' },
        ],
      },
      { temperature: 0 },
    );
    assert.equal(multi.text.split(' ')[0], 'Sat');

    // On the real corpus, with the seed fixed, known words change the answer and unknown ones do not.
    const params = { seed: 3 };
    const unknownA = await chat(model, 'zxqv plorb', params);
    const unknownB = await chat(model, 'wuggle', params);
    const crow = await chat(model, 'Tell me about the crow', params);
    const liberty = await chat(model, 'What is liberty', params);
    assert.equal(unknownA.text, unknownB.text);
    assert.notEqual(crow.text, unknownA.text);
    assert.notEqual(crow.text, liberty.text);
  });

  test('counts prompt words over all messages', async () => {
    const out = await chat(model, {
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Tell me, about the fox!' },
      ],
    });
    assert.equal(out.usage.prompt_tokens, 8);
    assert.equal((await chat(model, '')).usage.prompt_tokens, 0);
  });

  test('an abort stops generation with a retryable deadline error', async () => {
    const pre = new AbortController();
    pre.abort();
    await rejectsWith(chat(model, 'hello', {}, { signal: pre.signal }), RetryableError, (err) =>
      assert.equal(err.code, ErrorCode.DeadlineExceeded),
    );

    const mid = new AbortController();
    let seen = 0;
    await rejectsWith(
      chat(
        model,
        'hello',
        { max_tokens: 1024, temperature: 2 },
        {
          signal: mid.signal,
          onToken: () => {
            seen++;
            if (seen === 3) mid.abort();
          },
        },
      ),
      RetryableError,
      (err) => assert.equal(err.code, ErrorCode.DeadlineExceeded),
    );
    assert.equal(seen, 3);
  });

  test('a long answer yields to the event loop', async () => {
    // Greedy decoding on this corpus loops forever, so the answer runs to max_tokens.
    const looping = createNgramChatModel({ corpus: 'one two one two one two one two one two.' });
    let tokens = 0;
    let tokensWhenImmediateRan = -1;
    setImmediate(() => {
      tokensWhenImmediateRan = tokens;
    });
    const out = await chat(
      looping,
      'one two',
      { temperature: 0, max_tokens: 64 },
      { signal: new AbortController().signal, onToken: () => tokens++ },
    );
    assert.equal(out.finish_reason, 'length');
    assert.equal(tokens, 64);
    assert.ok(
      tokensWhenImmediateRan >= 0 && tokensWhenImmediateRan < 64,
      `immediate ran after ${tokensWhenImmediateRan} tokens`,
    );
  });

  test('rejects bad input and params with ValidationError', async () => {
    await rejectsValidation(chat(model, 'x', { max_tokens: 0 }), 'params.max_tokens');
    await rejectsValidation(chat(model, 'x', { max_tokens: 1025 }), 'params.max_tokens');
    await rejectsValidation(chat(model, 'x', { max_tokens: 1.5 }), 'params.max_tokens');
    await rejectsValidation(chat(model, 'x', { max_tokens: '10' }), 'params.max_tokens');
    await rejectsValidation(chat(model, 'x', { temperature: -0.1 }), 'params.temperature');
    await rejectsValidation(chat(model, 'x', { temperature: 2.1 }), 'params.temperature');
    await rejectsValidation(chat(model, 'x', { seed: 1.5 }), 'params.seed');
    await rejectsValidation(chat(model, 42), 'input');
    await rejectsValidation(chat(model, { prompt: 'x' }), 'input.messages');
    await rejectsValidation(chat(model, { messages: [] }), 'input.messages');
    const many = new Array(65).fill({ role: 'user', content: 'x' }) as unknown[];
    await rejectsValidation(chat(model, { messages: many }), 'input.messages');
    await rejectsValidation(
      chat(model, { messages: [{ role: 'tool', content: 'x' }] }),
      'input.messages.0.role',
    );
    await rejectsValidation(
      chat(model, { messages: [{ role: 'user', content: 'x'.repeat(32_769) }] }),
      'input.messages.0.content',
    );
    await rejectsValidation(chat(model, 'x'.repeat(32_769)), 'input');
    // Unknown keys are ignored and null means unset, as in the OpenAI API.
    const out = await chat(model, 'x', { top_p: 0.5, max_tokens: null, temperature: null });
    assert.ok(out.text.length > 0);
  });

  test('refuses a corpus without words', () => {
    assert.throws(() => createNgramChatModel({ corpus: '# only a title\n\n...' }), ValidationError);
  });
});

describe('echo', () => {
  test('returns its input unchanged', async () => {
    const model = createEchoModel();
    assert.equal(model.name, 'echo');
    assert.equal(model.version, 'v1');
    assert.equal(model.kind, ModelKind.Echo);
    for (const input of ['hi', 42, null, { a: [1, { b: 'c' }] }, [1, 2, 3]]) {
      assert.deepEqual(await model.run(input, { unrelated: true }, ctx()), { echo: input });
    }
  });

  test('rejects fault params unless the operator enabled faults', async () => {
    for (const model of [createEchoModel(), createEchoModel({ faults: { enabled: false } })]) {
      for (const [key, value] of [
        ['delay_ms', 10],
        ['fail', 'terminal'],
        ['fail', 'retryable'],
        ['fail_until', Date.now() + 60_000],
      ] as const) {
        await rejectsWith(model.run('x', { [key]: value }, ctx()), ValidationError, (err) => {
          assert.equal(err.path, `params.${key}`);
          assert.match(err.message, /fault injection is disabled by the operator/);
        });
      }
    }
    // Configured chaos is inert while the switch is off.
    const off = createEchoModel({ faults: { enabled: false, failureRate: 1, delayMs: 60_000 } });
    assert.deepEqual(await off.run('x', {}, ctx()), { echo: 'x' });
  });

  test('injects the requested failure when enabled', async () => {
    const model = createEchoModel({ faults: { enabled: true } });
    await rejectsWith(model.run('x', { fail: 'terminal' }, ctx()), TerminalError, (err) =>
      assert.equal(err.retryable, false),
    );
    await rejectsWith(model.run('x', { fail: 'retryable' }, ctx()), RetryableError, (err) =>
      assert.equal(err.retryable, true),
    );
    await rejectsValidation(model.run('x', { fail: 'sometimes' }, ctx()), 'params.fail');
    await rejectsValidation(model.run('x', { delay_ms: -1 }, ctx()), 'params.delay_ms');
    await rejectsValidation(model.run('x', { delay_ms: 1.5 }, ctx()), 'params.delay_ms');
    assert.deepEqual(await model.run('x', {}, ctx()), { echo: 'x' });
  });

  test('fail_until fails retryably before the given time and echoes after it', async () => {
    const model = createEchoModel({ faults: { enabled: true } });
    const until = Date.now() + 50;
    await rejectsWith(model.run('x', { fail_until: until }, ctx()), RetryableError, (err) => {
      assert.equal(err.code, ErrorCode.ModelFailed);
      assert.equal(err.retryable, true);
    });
    await new Promise((resolve) => setTimeout(resolve, until - Date.now() + 5));
    assert.deepEqual(await model.run('x', { fail_until: until }, ctx()), { echo: 'x' });
    assert.deepEqual(await model.run('x', { fail_until: 0 }, ctx()), { echo: 'x' });
    await rejectsValidation(model.run('x', { fail_until: 'soon' }, ctx()), 'params.fail_until');
    await rejectsValidation(model.run('x', { fail_until: -1 }, ctx()), 'params.fail_until');
  });

  // Timers may fire up to a millisecond early against performance.now(), hence the 1 ms slack.
  const TIMER_SLACK_MS = 1;

  test('delays by at least the requested and configured time', async () => {
    const model = createEchoModel({ faults: { enabled: true, delayMs: 20 } });
    const start = performance.now();
    assert.deepEqual(await model.run('x', { delay_ms: 40 }, ctx()), { echo: 'x' });
    const elapsed = performance.now() - start;
    console.log(`echo delay: requested 20+40 ms, measured ${elapsed.toFixed(1)} ms`);
    assert.ok(elapsed >= 60 - TIMER_SLACK_MS, `only ${elapsed} ms`);
  });

  test('caps a requested delay at maxDelayMs', async () => {
    const model = createEchoModel({ faults: { enabled: true, maxDelayMs: 20 } });
    const start = performance.now();
    // Without the cap this would hit the 10 s signal and reject.
    const out = await model.run(
      'x',
      { delay_ms: 3_600_000 },
      { signal: AbortSignal.timeout(10_000) },
    );
    assert.deepEqual(out, { echo: 'x' });
    assert.ok(performance.now() - start >= 20 - TIMER_SLACK_MS);
  });

  test('an abort cuts a delay short with a retryable deadline error', async () => {
    const model = createEchoModel({ faults: { enabled: true } });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 10);
    await rejectsWith(
      model.run('x', { delay_ms: 60_000 }, { signal: controller.signal }),
      RetryableError,
      (err) => assert.equal(err.code, ErrorCode.DeadlineExceeded),
    );
  });

  test('failureRate 1 always fails retryably and 0 never does', async () => {
    const always = createEchoModel({ faults: { enabled: true, failureRate: 1 } });
    const never = createEchoModel({ faults: { enabled: true, failureRate: 0 } });
    for (let i = 0; i < 50; i++) {
      await rejectsWith(always.run(i, {}, ctx()), RetryableError, (err) =>
        assert.equal(err.code, ErrorCode.ModelFailed),
      );
      assert.deepEqual(await never.run(i, {}, ctx()), { echo: i });
    }
  });

  test('rejects out-of-range fault options at construction', () => {
    assert.throws(
      () => createEchoModel({ faults: { enabled: true, failureRate: 1.5 } }),
      ValidationError,
    );
    assert.throws(
      () => createEchoModel({ faults: { enabled: true, delayMs: -5 } }),
      ValidationError,
    );
  });
});

describe('createBuiltinModels', () => {
  test('returns echo, chat and embedding, passing each its options', async () => {
    const models = createBuiltinModels({ echo: { faults: { enabled: true } } });
    assert.deepEqual(
      models.map((m) => [m.name, m.kind]),
      [
        ['echo', ModelKind.Echo],
        ['ngram-chat', ModelKind.Chat],
        ['hash-embed', ModelKind.Embedding],
      ],
    );
    const echo = models[0];
    assert.ok(echo);
    await rejectsWith(echo.run('x', { fail: 'terminal' }, ctx()), TerminalError);
    for (const m of models) assert.match(m.name, /^[a-z0-9][a-z0-9_-]*$/);
  });
});
