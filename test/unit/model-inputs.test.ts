/**
 * Each model kind's input contract (`protocol/model-inputs.ts`): every bound is accepted at its
 * value and refused one past it, with a `ValidationError` naming the field and the limit; and
 * the built-in runtimes refuse exactly what the gateway's check refuses, with the same message,
 * so nothing the gateway accepts can fail on its input once queued.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createBuiltinModels, type ModelRuntime } from '../../actors/index.js';
import {
  checkModelInput,
  ErrorCode,
  MAX_CHAT_CONTENT_CHARS,
  MAX_CHAT_MAX_TOKENS,
  MAX_CHAT_MESSAGES,
  MAX_CHAT_TEMPERATURE,
  MAX_EMBEDDING_DIMENSIONS,
  MAX_EMBEDDING_INPUT_CHARS,
  MAX_EMBEDDING_INPUTS,
  MIN_EMBEDDING_DIMENSIONS,
  ModelKind,
  parseChatInput,
  parseChatParams,
  parseEmbeddingInput,
  parseEmbeddingParams,
  ValidationError,
} from '../../protocol/index.js';

const user = (content: string) => ({ role: 'user', content });
const messages = (n: number) => ({ messages: Array.from({ length: n }, () => user('x')) });
const strings = (n: number) => Array.from({ length: n }, () => 'w');

/** Asserts that `run` throws a terminal `invalid_request` whose message is `expected`. */
function refuses(run: () => unknown, expected: string): void {
  assert.throws(run, (err: unknown) => {
    assert.ok(err instanceof ValidationError, `expected ValidationError, got ${String(err)}`);
    assert.equal(err.message, expected);
    assert.equal(err.code, ErrorCode.InvalidRequest);
    assert.equal(err.retryable, false);
    return true;
  });
}

describe('chat input contract', () => {
  test('messages: 1 and 64 are accepted, 0 and 65 refused naming the limit', () => {
    assert.equal(parseChatInput(messages(1)).length, 1);
    assert.equal(parseChatInput(messages(MAX_CHAT_MESSAGES)).length, MAX_CHAT_MESSAGES);
    refuses(() => parseChatInput(messages(0)), 'input.messages: at least 1 message');
    refuses(
      () => parseChatInput(messages(MAX_CHAT_MESSAGES + 1)),
      `input.messages: at most ${MAX_CHAT_MESSAGES} messages`,
    );
  });

  test('content and string prompts: 32,768 characters accepted, 32,769 refused', () => {
    const atBound = 'x'.repeat(MAX_CHAT_CONTENT_CHARS);
    const past = `${atBound}x`;
    assert.deepEqual(parseChatInput(atBound), [user(atBound)]);
    assert.equal(parseChatInput({ messages: [user(atBound)] })[0]?.content, atBound);
    const limit = `at most ${MAX_CHAT_CONTENT_CHARS} characters`;
    refuses(() => parseChatInput(past), `input: ${limit}`);
    refuses(
      () => parseChatInput({ messages: [user('a'), user(past)] }),
      `input.messages.1.content: ${limit}`,
    );
  });

  test('shapes other than a string or {messages} are refused at their field', () => {
    assert.throws(() => parseChatInput(42), /^ValidationError: input: /);
    assert.throws(() => parseChatInput({ prompt: 'x' }), /^ValidationError: input\.messages: /);
    assert.throws(
      () => parseChatInput({ messages: [{ role: 'tool', content: 'x' }] }),
      /^ValidationError: input\.messages\.0\.role: /,
    );
  });

  test('max_tokens: 1 and 1024 accepted, 0, 1025 and 1.5 refused', () => {
    assert.equal(parseChatParams({ max_tokens: 1 }).max_tokens, 1);
    assert.equal(
      parseChatParams({ max_tokens: MAX_CHAT_MAX_TOKENS }).max_tokens,
      MAX_CHAT_MAX_TOKENS,
    );
    refuses(() => parseChatParams({ max_tokens: 0 }), 'params.max_tokens: at least 1');
    refuses(
      () => parseChatParams({ max_tokens: MAX_CHAT_MAX_TOKENS + 1 }),
      `params.max_tokens: at most ${MAX_CHAT_MAX_TOKENS}`,
    );
    assert.throws(() => parseChatParams({ max_tokens: 1.5 }), /params\.max_tokens/);
  });

  test('temperature: 0 and 2 accepted, below 0 and past 2 refused', () => {
    assert.equal(parseChatParams({ temperature: 0 }).temperature, 0);
    assert.equal(
      parseChatParams({ temperature: MAX_CHAT_TEMPERATURE }).temperature,
      MAX_CHAT_TEMPERATURE,
    );
    refuses(() => parseChatParams({ temperature: -0.01 }), 'params.temperature: at least 0');
    refuses(
      () => parseChatParams({ temperature: MAX_CHAT_TEMPERATURE + 0.01 }),
      `params.temperature: at most ${MAX_CHAT_TEMPERATURE}`,
    );
  });

  test('unknown params are stripped and null means unset, as in the OpenAI API', () => {
    assert.deepEqual(parseChatParams({ logit_bias: { 1: 5 }, max_tokens: null, seed: 3 }), {
      max_tokens: null,
      seed: 3,
    });
  });
});

describe('embedding input contract', () => {
  test('strings: 1 and 256 accepted, 0 and 257 refused naming the limit', () => {
    assert.deepEqual(parseEmbeddingInput('w'), ['w']);
    assert.equal(parseEmbeddingInput(strings(MAX_EMBEDDING_INPUTS)).length, MAX_EMBEDDING_INPUTS);
    refuses(() => parseEmbeddingInput([]), 'input: at least 1 string');
    refuses(
      () => parseEmbeddingInput(strings(MAX_EMBEDDING_INPUTS + 1)),
      `input: at most ${MAX_EMBEDDING_INPUTS} strings`,
    );
  });

  test('string length: 32,768 accepted, 32,769 refused, alone or in a batch', () => {
    const atBound = 'w'.repeat(MAX_EMBEDDING_INPUT_CHARS);
    const past = `${atBound}w`;
    assert.deepEqual(parseEmbeddingInput(atBound), [atBound]);
    const limit = `at most ${MAX_EMBEDDING_INPUT_CHARS} characters`;
    refuses(() => parseEmbeddingInput(past), `input: ${limit}`);
    refuses(() => parseEmbeddingInput(['ok', past]), `input.1: ${limit}`);
    assert.throws(() => parseEmbeddingInput(['ok', 7]), /^ValidationError: input\.1: /);
    assert.throws(() => parseEmbeddingInput({ text: 'x' }), /^ValidationError: input: /);
  });

  test('dimensions: 32 and 4096 accepted, 31 and 4097 refused; unknown params stripped', () => {
    const at = (dimensions: number) => parseEmbeddingParams({ dimensions }).dimensions;
    assert.equal(at(MIN_EMBEDDING_DIMENSIONS), MIN_EMBEDDING_DIMENSIONS);
    assert.equal(at(MAX_EMBEDDING_DIMENSIONS), MAX_EMBEDDING_DIMENSIONS);
    refuses(
      () => at(MIN_EMBEDDING_DIMENSIONS - 1),
      `params.dimensions: at least ${MIN_EMBEDDING_DIMENSIONS}`,
    );
    refuses(
      () => at(MAX_EMBEDDING_DIMENSIONS + 1),
      `params.dimensions: at most ${MAX_EMBEDDING_DIMENSIONS}`,
    );
    assert.deepEqual(parseEmbeddingParams({ encoding_format: 'float' }), {});
  });
});

describe('checkModelInput', () => {
  test('checks the input before the params, by kind; echo takes anything', () => {
    refuses(
      () => checkModelInput(ModelKind.Chat, messages(65), { max_tokens: 0 }),
      'input.messages: at most 64 messages',
    );
    refuses(
      () => checkModelInput(ModelKind.Embedding, 'w', { dimensions: 1 }),
      'params.dimensions: at least 32',
    );
    checkModelInput(ModelKind.Echo, messages(65), { anything: [1, 2] });
    checkModelInput(ModelKind.Chat, 'hi', {});
    checkModelInput(ModelKind.Embedding, ['a', 'b'], { dimensions: 64 });
  });

  test('the built-in runtimes refuse exactly what the gateway check refuses, in the same words', async () => {
    const runtimes = createBuiltinModels();
    const cases: [ModelKind, unknown, Record<string, unknown>][] = [
      [ModelKind.Chat, messages(MAX_CHAT_MESSAGES), { max_tokens: 1 }],
      [ModelKind.Chat, messages(MAX_CHAT_MESSAGES + 1), {}],
      [ModelKind.Chat, 'x'.repeat(MAX_CHAT_CONTENT_CHARS + 1), {}],
      [ModelKind.Chat, 'hi', { max_tokens: MAX_CHAT_MAX_TOKENS + 1 }],
      [ModelKind.Chat, 'hi', { temperature: MAX_CHAT_TEMPERATURE + 1, max_tokens: 2 }],
      [ModelKind.Chat, 'hi', { max_tokens: null, temperature: 0, top_p: 1 }],
      [ModelKind.Chat, { prompt: 'hi' }, {}],
      [ModelKind.Embedding, strings(MAX_EMBEDDING_INPUTS), { dimensions: 32 }],
      [ModelKind.Embedding, strings(MAX_EMBEDDING_INPUTS + 1), {}],
      [ModelKind.Embedding, ['w', 'w'.repeat(MAX_EMBEDDING_INPUT_CHARS + 1)], {}],
      [ModelKind.Embedding, 'w', { dimensions: MAX_EMBEDDING_DIMENSIONS + 1 }],
      [ModelKind.Embedding, 'w', { dimensions: null }],
      [ModelKind.Embedding, 42, {}],
    ];
    const ctx = { signal: new AbortController().signal };
    for (const [kind, input, params] of cases) {
      const runtime = runtimes.find((r) => r.kind === kind) as ModelRuntime;
      const gateway = outcomeOf(() => checkModelInput(kind, input, params));
      const actor = await runtime.run(input, params, ctx).then(
        () => 'accepted',
        (err: unknown) => String(err),
      );
      assert.equal(gateway, actor, `${kind} ${JSON.stringify(input).slice(0, 60)}`);
    }
  });
});

function outcomeOf(run: () => void): string {
  try {
    run();
    return 'accepted';
  } catch (err) {
    return String(err);
  }
}
