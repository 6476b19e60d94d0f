/**
 * Telemetry over real processes: a gateway and an actor host export OTLP/HTTP (JSON) to a
 * receiver started here, and serve Prometheus scrapes. Asserted: one trace id across both
 * processes from the client's `traceparent` through the queue to the model, retries as numbered
 * attempts in the same trace, counters that grow by exactly the requests sent, and a queue-depth
 * gauge that rises while no actor runs.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestEdge, waitFor, type TestEdge } from '../harness/edge.js';
import { Kind, OtlpReceiver, type ReceivedSpan } from '../harness/otlp-receiver.js';

/** Sums the samples of `metric` whose labels include every `labels` pair. */
function sample(text: string, metric: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(metric + '{') && !line.startsWith(metric + ' ')) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  return res.text();
}

const receiver = new OtlpReceiver();
let edge: TestEdge;

before(async () => {
  await receiver.start();
  const telemetryEnv = {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: '100',
    OTEL_METRIC_EXPORT_INTERVAL: '500',
    VIGIL_METRICS_PORT: '0',
  };
  edge = await startTestEdge({
    gatewayEnv: telemetryEnv,
    actorEnv: {
      ...telemetryEnv,
      VIGIL_ECHO_FAULTS: '{"enabled":true}',
      VIGIL_RETRY_SCHEDULE_MS: '100',
    },
  });
});
after(async () => {
  await edge?.stop();
  await receiver.stop();
});

const infer = (body: unknown, headers: Record<string, string> = {}) =>
  edge.request('/v1/models/echo/infer', { method: 'POST', body: JSON.stringify(body), headers });

const randomHex = (bytes: number): string =>
  Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString('hex');

/** Waits until the receiver holds spans of `traceId` that satisfy `ready`. */
function spansOf(traceId: string, ready: (spans: ReceivedSpan[]) => boolean) {
  return waitFor(
    `spans of trace ${traceId}`,
    () => {
      const spans = receiver.spans.filter((s) => s.traceId === traceId);
      return Promise.resolve(ready(spans) ? spans : undefined);
    },
    15_000,
  );
}

describe('traces across the queue', () => {
  test('one trace from the client through the gateway, the queue and the actor', async () => {
    const traceId = randomHex(16);
    const clientSpanId = randomHex(8);
    const res = await infer(
      { input: { hello: 'trace' } },
      {
        traceparent: `00-${traceId}-${clientSpanId}-01`,
      },
    );
    assert.equal(res.status, 200);
    const taskId = String(((await res.json()) as Record<string, unknown>)['id']);

    const spans = await spansOf(
      traceId,
      (found) =>
        ['send reply', 'store echo', 'infer echo', 'queued echo', 'process echo'].every((name) =>
          found.some((s) => s.name === name),
        ) && found.some((s) => s.kind === Kind.Server),
    );
    const one = (name: string): ReceivedSpan => {
      const matching = spans.filter((s) => s.name === name);
      assert.equal(matching.length, 1, `one '${name}' span, got ${matching.length}`);
      return matching[0] as ReceivedSpan;
    };
    const server = spans.find((s) => s.kind === Kind.Server) as ReceivedSpan;
    const send = one('send echo');
    const queued = one('queued echo');
    const process = one('process echo');
    const inferSpan = one('infer echo');
    const store = one('store echo');
    const reply = one('send reply');
    console.log(
      `trace ${traceId}: ${spans.length} spans from`,
      [...new Set(spans.map((s) => s.service))].join(', '),
    );

    // Both processes, told apart by service.name.
    assert.equal(server.service, 'vigil-gateway');
    assert.equal(send.service, 'vigil-gateway');
    for (const span of [queued, process, inferSpan, store, reply])
      assert.equal(span.service, 'vigil-actor-host');

    // The chain: client -> HTTP server -> publish -> (queued, process) -> model, store, reply.
    assert.equal(server.parentSpanId, clientSpanId);
    assert.equal(server.name, 'POST /v1/models/:model/infer');
    assert.equal(send.parentSpanId, server.spanId);
    assert.equal(send.kind, Kind.Producer);
    assert.equal(queued.parentSpanId, send.spanId);
    assert.equal(process.parentSpanId, send.spanId);
    assert.equal(process.kind, Kind.Consumer);
    for (const child of [inferSpan, store, reply]) assert.equal(child.parentSpanId, process.spanId);

    // Messaging semantic conventions and the task on the spans.
    assert.equal(send.attributes['messaging.system'], 'nats');
    assert.equal(send.attributes['messaging.message.id'], taskId);
    assert.match(
      String(send.attributes['messaging.destination.name']),
      /^vigil\.req\.test\.echo\./,
    );
    assert.equal(process.attributes['messaging.system'], 'nats');
    assert.equal(process.attributes['messaging.operation.type'], 'process');
    assert.equal(process.attributes['vigil.task.id'], taskId);
    assert.equal(process.attributes['vigil.task.attempt'], 1);

    // The queued span covers the wait: from acceptance to the delivery, before the processing.
    assert.ok(queued.startMs <= queued.endMs);
    assert.ok(queued.endMs <= process.startMs + 1, 'queued ends when processing starts');
    assert.ok(queued.startMs >= server.startMs - 1, 'queued starts inside the HTTP request');
  });

  test('a retried task shows each attempt, numbered, in the same trace', async () => {
    const traceId = randomHex(16);
    const res = await infer(
      { input: { retry: true }, params: { fail_until: Date.now() + 300 } },
      { traceparent: `00-${traceId}-${randomHex(8)}-01`, Prefer: 'respond-async' },
    );
    assert.equal(res.status, 202);
    const spans = await spansOf(
      traceId,
      (found) =>
        found.filter((s) => s.name === 'process echo').length >= 2 &&
        found.some((s) => s.name === 'store echo'),
    );
    const attempts = spans
      .filter((s) => s.name === 'process echo')
      .sort((a, b) => a.startMs - b.startMs);
    const send = spans.find((s) => s.name === 'send echo') as ReceivedSpan;
    console.log(`retried trace: ${attempts.length} attempts`);
    assert.deepEqual(
      attempts.map((s) => s.attributes['vigil.task.attempt']),
      attempts.map((_, i) => i + 1),
    );
    for (const attempt of attempts) assert.equal(attempt.parentSpanId, send.spanId);
    // One actor ran them all here, so each retry links to the attempt before it.
    for (const [i, attempt] of attempts.entries()) {
      assert.deepEqual(attempt.links, i === 0 ? [] : [attempts[i - 1]!.spanId]);
    }
    assert.ok(
      typeof attempts[0]?.attributes['vigil.retry_in_ms'] === 'number',
      'the failed attempt says when the next one runs',
    );
    assert.equal(spans.filter((s) => s.name === 'queued echo').length, 1);
  });
});

describe('metrics', () => {
  test('tokens are counted per tenant and model, prompt and completion apart', async () => {
    const actorMetrics = String(edge.actorHosts[0]?.ready['metricsUrl']);
    const tokens = (text: string, kind: string) =>
      sample(text, 'vigil_tokens_total', {
        vigil_model: 'ngram-chat',
        vigil_tenant: 'alpha',
        vigil_token_kind: kind,
      });
    const before = await scrape(actorMetrics);
    const usage = { prompt: 0, completion: 0 };
    for (const max of [5, 9]) {
      const res = await edge.request('/v1/chat/completions', {
        method: 'POST',
        body: JSON.stringify({
          model: 'ngram-chat',
          messages: [{ role: 'user', content: 'the sea and the ships' }],
          max_tokens: max,
        }),
      });
      const body = (await res.json()) as {
        usage: { prompt_tokens: number; completion_tokens: number };
      };
      usage.prompt += body.usage.prompt_tokens;
      usage.completion += body.usage.completion_tokens;
    }
    const after = await scrape(actorMetrics);
    console.log(`usage counted: ${JSON.stringify(usage)}`);
    assert.equal(tokens(after, 'prompt') - tokens(before, 'prompt'), usage.prompt);
    assert.equal(tokens(after, 'completion') - tokens(before, 'completion'), usage.completion);
  });

  test('counters grow by the requests sent, on both nodes', async () => {
    const gatewayMetrics = String(edge.gateway.ready['metricsUrl']);
    const actorMetrics = String(edge.actorHosts[0]?.ready['metricsUrl']);
    assert.match(gatewayMetrics, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    assert.match(actorMetrics, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const accepted = (text: string) =>
      sample(text, 'vigil_tasks_accepted_total', { vigil_model: 'echo' });
    const succeeded = (text: string) =>
      sample(text, 'vigil_tasks_finished_total', {
        vigil_model: 'echo',
        vigil_outcome: 'succeeded',
      });
    // Rate, latency and errors per route and model: the histogram's count per label set.
    const inferRoute = { http_route: '/v1/models/:model/infer' };
    const echoOk = (text: string) =>
      sample(text, 'http_server_request_duration_count', {
        ...inferRoute,
        vigil_model: 'echo',
        http_response_status_code: '200',
      });
    const notFound = (text: string) =>
      sample(text, 'http_server_request_duration_count', {
        ...inferRoute,
        http_response_status_code: '404',
      });
    const gatewayBefore = await scrape(gatewayMetrics);
    const acceptedBefore = accepted(gatewayBefore);
    const echoOkBefore = echoOk(gatewayBefore);
    const notFoundBefore = notFound(gatewayBefore);
    const succeededBefore = succeeded(await scrape(actorMetrics));

    const N = 25;
    const statuses = await Promise.all(
      Array.from({ length: N }, async (_, i) => (await infer({ input: { i } })).status),
    );
    assert.deepEqual(statuses, Array(N).fill(200));
    const unknown = await edge.request('/v1/models/no-such-model/infer', {
      method: 'POST',
      body: JSON.stringify({ input: {} }),
    });
    assert.equal(unknown.status, 404);

    const gatewayText = await scrape(gatewayMetrics);
    const actorText = await scrape(actorMetrics);
    const acceptedDelta = accepted(gatewayText) - acceptedBefore;
    const succeededDelta = succeeded(actorText) - succeededBefore;
    console.log(`after ${N} requests: accepted +${acceptedDelta}, succeeded +${succeededDelta}`);
    assert.equal(acceptedDelta, N);
    assert.equal(succeededDelta, N);
    // The HTTP layer, per route, model and status; a model name that is not in the catalog
    // never becomes a label.
    assert.equal(echoOk(gatewayText) - echoOkBefore, N);
    // Counted once: @hono/otel makes the span and records no second histogram.
    assert.equal(notFound(gatewayText) - notFoundBefore, 1);
    assert.doesNotMatch(gatewayText, /no-such-model/);
    assert.match(gatewayText, /vigil_nats_connected\{[^}]*\} 1/);
    assert.match(actorText, /vigil_model_run_duration_count/);
    assert.match(actorText, /nodejs_eventloop_delay/);
    assert.match(actorText, /process_memory_usage/);

    // OTLP metrics were pushed by both processes as well.
    await waitFor(
      'OTLP metric posts from both nodes',
      () =>
        Promise.resolve(
          (receiver.metricPosts.get('vigil-gateway') ?? 0) > 0 &&
            (receiver.metricPosts.get('vigil-actor-host') ?? 0) > 0
            ? true
            : undefined,
        ),
      10_000,
    );
  });

  test('the queue-depth gauge rises while no actor runs, and falls when one returns', async () => {
    const gatewayMetrics = String(edge.gateway.ready['metricsUrl']);
    const depth = async () =>
      sample(await scrape(gatewayMetrics), 'vigil_queue_pending', { vigil_model: 'echo' });
    const host = edge.actorHosts.shift();
    await host?.stop();
    const M = 12;
    for (let i = 0; i < M; i += 1) {
      const res = await infer({ input: { queued: i } }, { Prefer: 'respond-async' });
      assert.equal(res.status, 202);
    }
    const raised = await depth();
    console.log(`queue depth with no actor after ${M} async requests: ${raised}`);
    assert.ok(raised >= M, `queue depth ${raised} >= ${M}`);

    await edge.startActorHost();
    const drained = await waitFor(
      'queue drained',
      async () => ((await depth()) === 0 ? true : undefined),
      20_000,
    );
    assert.ok(drained);
  });
});
