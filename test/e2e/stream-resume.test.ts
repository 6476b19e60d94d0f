/**
 * Streams that survive failures, in two regions of a real supercluster with real gateways and
 * actor hosts: a gateway killed (SIGKILL) in the middle of an OpenAI stream, resumed at the other
 * region's gateway with the same Idempotency-Key and `Last-Event-ID`; and the model's executor
 * killed mid-stream, so the task runs again. Either way the text the client assembles equals an
 * uninterrupted run of the same seeded request: no token missing, none twice, no mixed text.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Kvm } from '@nats-io/kv';
import {
  actorHeartbeatSchema,
  assetNames,
  decodeAs,
  type ActorHeartbeat,
} from '../../protocol/index.js';
import { waitFor } from '../harness/edge.js';
import { startTestRegions, type TestRegions } from '../harness/regions.js';
import { readEvents, type ReceivedEvent } from '../harness/sse.js';

/** ngram-chat paced at this per token: a 60-token answer streams for about 2 s. */
const TOKEN_INTERVAL_MS = 30;

let regions: TestRegions;
before(async () => {
  regions = await startTestRegions({
    regions: [
      { name: 'eu', nodes: 1 },
      { name: 'us', nodes: 1 },
    ],
    assets: { heartbeatIntervalMs: 500 },
    actorEnv: {
      VIGIL_MODELS: 'ngram-chat',
      VIGIL_CHAT_TOKEN_INTERVAL_MS: String(TOKEN_INTERVAL_MS),
      VIGIL_ISOLATION: 'child-process',
      VIGIL_HEARTBEAT_MS: '500',
      // A retried task runs again at once, not after the first backoff step.
      VIGIL_RETRY_SCHEDULE_MS: '100',
    },
  });
});
after(async () => {
  await regions?.stop();
});

const body = (seed: number) =>
  JSON.stringify({
    model: 'ngram-chat',
    messages: [{ role: 'user', content: 'Tell me of the old sea captain and his ship' }],
    max_tokens: 60,
    seed,
    stream: true,
  });

function chatStream(at: string, seed: number, key: string, lastEventId?: string) {
  return regions.request(at, '/v1/chat/completions', {
    method: 'POST',
    body: body(seed),
    headers: {
      'Idempotency-Key': key,
      ...(lastEventId === undefined ? {} : { 'Last-Event-ID': lastEventId }),
    },
  });
}

/** The content deltas of chunk events, in order. */
function contents(events: ReceivedEvent[]): string[] {
  return events
    .filter((e) => e.data !== '[DONE]')
    .map((e) => JSON.parse(e.data) as { choices?: { delta?: { content?: string } }[] })
    .map((c) => c.choices?.[0]?.delta?.content ?? '')
    .filter((s) => s !== '');
}

/** The text of an uninterrupted stream of the same request. */
async function uninterrupted(at: string, seed: number): Promise<string> {
  const { events } = await readEvents(
    await chatStream(at, seed, `whole-${randomBytes(6).toString('hex')}`),
  );
  assert.equal(events.at(-1)!.data, '[DONE]');
  return contents(events).join('');
}

describe('streams that survive failures', () => {
  test('the gateway dies mid-stream; the other region resumes after the last chunk seen', async () => {
    const seed = 21;
    const expected = await uninterrupted('eu', seed);
    const key = `resume-${randomBytes(6).toString('hex')}`;
    const gateway = regions.gateways.get('eu')!;
    // Read a few chunks, then the gateway is killed under the open stream.
    const partial = await readEvents(await chatStream('eu', seed, key), {
      stopWhen: (_e, seen) => contents(seen).length >= 5,
    });
    gateway.signal('SIGKILL');
    await gateway.exited;
    const lastId = partial.events.at(-1)!.id!;
    const before = contents(partial.events).join('');
    const resumedAt = Date.now();
    const rest = await readEvents(await chatStream('us', seed, key, lastId));
    console.log(
      `resume: ${contents(partial.events).length} chunks before the kill, ` +
        `${contents(rest.events).length} after, at the other region in ${rest.events[0]!.at - resumedAt} ms`,
    );
    assert.equal(rest.events.at(-1)!.data, '[DONE]');
    const firstResumed = JSON.parse(rest.events[0]!.data) as { choices: { delta: Json }[] };
    assert.equal(firstResumed.choices[0]!.delta['role'], undefined, 'no second role chunk');
    assert.equal(
      before + contents(rest.events).join(''),
      expected,
      'nothing missing, nothing twice',
    );
  });

  test("the model's executor dies mid-stream; the retry continues the same text", async () => {
    // In the other region: this one's gateway was killed by the test before.
    const seed = 33;
    const expected = await uninterrupted('us', seed);
    const nc = await regions.connect('us');
    const beats = await new Kvm(nc).open(assetNames.actorBucket('us'));
    const executorPid = async (): Promise<number> => {
      for await (const key of await beats.keys()) {
        const entry = await beats.get(key);
        if (!entry || entry.operation !== 'PUT') continue;
        const beat: ActorHeartbeat = decodeAs(actorHeartbeatSchema, entry.value, 'beat');
        if (beat.model === 'ngram-chat') return beat.pid;
      }
      return 0;
    };
    const killed = await executorPid();
    assert.ok(killed > 0);
    const res = await chatStream('us', seed, `kill-${randomBytes(6).toString('hex')}`);
    let shownAtKill = 0;
    const { events } = await readEvents(res, {
      stopWhen: (_e, seen) => {
        if (shownAtKill === 0 && contents(seen).length >= 5) {
          shownAtKill = contents(seen).length;
          process.kill(killed, 'SIGKILL');
        }
        return false;
      },
      timeoutMs: 60_000,
    });
    assert.ok(shownAtKill > 0, 'the executor was killed mid-stream');
    await waitFor('a new executor', async () =>
      (await executorPid()) !== killed ? true : undefined,
    );
    console.log(
      `executor killed after ${shownAtKill} chunks; ${contents(events).length} chunks in all`,
    );
    assert.equal(events.at(-1)!.data, '[DONE]');
    assert.equal(contents(events).join(''), expected, 'the same text: none twice, none mixed');
  });
});

type Json = Record<string, unknown>;
