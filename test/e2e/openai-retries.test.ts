/**
 * The official `openai` client's own retries against a model slower than the sync wait, over real
 * HTTP, a real nats-server and real gateway and actor-host processes: the client retries each
 * 504 without an Idempotency-Key, and exactly one task runs, whose answer the client gets.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import OpenAI from 'openai';
import { assetNames } from '../../protocol/index.js';
import { startTestEdge, TENANTS, type TestEdge } from '../harness/edge.js';

const SYNC_WAIT_MS = 1_500;
/** 150 tokens at 25 ms: an answer takes about 3.75 s, past two sync waits' worth of the first. */
const TOKEN_INTERVAL_MS = 25;
let edge: TestEdge;

before(async () => {
  edge = await startTestEdge({
    actorEnv: {
      VIGIL_MODELS: 'ngram-chat',
      VIGIL_CHAT_TOKEN_INTERVAL_MS: String(TOKEN_INTERVAL_MS),
    },
    gatewayEnv: { VIGIL_MAX_SYNC_WAIT_MS: String(SYNC_WAIT_MS) },
  });
});
after(async () => {
  await edge?.stop();
});

/** Requests the region's stream has accepted so far. */
async function accepted(): Promise<number> {
  const jsm = await jetstreamManager(await edge.connect());
  return (await jsm.streams.info(assetNames.requestStream(edge.region))).state.last_seq;
}

const slow = {
  model: 'ngram-chat',
  messages: [{ role: 'user' as const, content: 'Tell me a long tale of the sea' }],
  max_tokens: 150,
  min_tokens: 150,
  seed: 4,
};

describe("the openai client's retries", () => {
  test('a model slower than the sync wait: the client retries, one task runs, the answer arrives', async () => {
    const before = await accepted();
    const retries: number[] = [];
    const client = new OpenAI({
      apiKey: TENANTS.alpha.key,
      baseURL: `${edge.gatewayUrl}/v1`,
      // Its defaults: two retries. The fetch wrapper only watches what it sends.
      fetch: async (url, init) => {
        const headers = new Headers(init?.headers);
        retries.push(Number(headers.get('x-stainless-retry-count') ?? 0));
        return fetch(url, init);
      },
    });
    const started = Date.now();
    const answer = await client.chat.completions.create(
      slow as OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming,
    );
    const tookMs = Date.now() - started;
    const tasks = (await accepted()) - before;
    console.log(
      `client attempts ${retries.join(',')}; answer after ${tookMs} ms; tasks run: ${tasks}`,
    );
    assert.ok(retries.length >= 2, 'the client retried at least once (504 past the sync wait)');
    assert.equal(tasks, 1, 'exactly one task ran');
    assert.equal(answer.usage!.completion_tokens, 150, 'the client got the whole answer');
  });

  test('the same request sent twice on purpose (not a retry) is two tasks', async () => {
    const before = await accepted();
    const quick = { ...slow, max_tokens: 3, min_tokens: 3 };
    for (let i = 0; i < 2; i++) {
      const res = await edge.request('/v1/chat/completions', {
        method: 'POST',
        body: JSON.stringify(quick),
      });
      assert.equal(res.status, 200);
    }
    assert.equal((await accepted()) - before, 2);
  });

  test('a non-retryable error tells the client not to retry', async () => {
    const res = await edge.request('/v1/chat/completions', {
      method: 'POST',
      // A field the model cannot honour: refused before any task exists, for good.
      body: JSON.stringify({ ...slow, logit_bias: { '1': 5 } }),
    });
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('x-should-retry'), 'false');
  });
});
