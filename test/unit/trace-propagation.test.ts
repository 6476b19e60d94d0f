/**
 * The NATS header getter/setter with OpenTelemetry's real W3C propagator and nats.js's real
 * `MsgHdrs`, including a round trip through the wire encoding.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MsgHdrsImpl } from '@nats-io/nats-core/internal';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { context, ROOT_CONTEXT, TraceFlags, trace, type SpanContext } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { StackContextManager } from '@opentelemetry/sdk-trace';
import { createLogger } from '../../nodes/common/index.js';
import { natsHeaderGetter, natsHeaderSetter } from '../../protocol/index.js';

const propagator = new W3CTraceContextPropagator();
const parent: SpanContext = {
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  spanId: '00f067aa0ba902b7',
  traceFlags: TraceFlags.SAMPLED,
};

describe('trace context in NATS headers', () => {
  test('inject writes traceparent; extract reads the same span context back', () => {
    const hdrs = natsHeaders();
    propagator.inject(trace.setSpanContext(ROOT_CONTEXT, parent), hdrs, natsHeaderSetter);
    assert.equal(hdrs.get('traceparent'), `00-${parent.traceId}-${parent.spanId}-01`);
    const extracted = trace.getSpanContext(
      propagator.extract(ROOT_CONTEXT, hdrs, natsHeaderGetter),
    );
    assert.equal(extracted?.traceId, parent.traceId);
    assert.equal(extracted?.spanId, parent.spanId);
    assert.equal(extracted?.traceFlags, TraceFlags.SAMPLED);
    assert.equal(extracted?.isRemote, true);
  });

  test('survives the header wire encoding (what the actor receives)', () => {
    const hdrs = natsHeaders();
    hdrs.set('Nats-Msg-Id', 'task-1');
    propagator.inject(trace.setSpanContext(ROOT_CONTEXT, parent), hdrs, natsHeaderSetter);
    const decoded = MsgHdrsImpl.decode((hdrs as MsgHdrsImpl).encode());
    assert.deepEqual(natsHeaderGetter.keys(decoded).sort(), ['Nats-Msg-Id', 'traceparent']);
    const extracted = trace.getSpanContext(
      propagator.extract(ROOT_CONTEXT, decoded, natsHeaderGetter),
    );
    assert.equal(extracted?.traceId, parent.traceId);
  });

  test('a message without trace headers (or no headers) extracts no parent', () => {
    assert.equal(natsHeaderGetter.get(natsHeaders(), 'traceparent'), undefined);
    assert.equal(natsHeaderGetter.get(undefined, 'traceparent'), undefined);
    assert.deepEqual(natsHeaderGetter.keys(undefined), []);
    const extracted = propagator.extract(ROOT_CONTEXT, undefined, natsHeaderGetter);
    assert.equal(trace.getSpanContext(extracted), undefined);
  });

  test('a malformed traceparent is ignored, not trusted', () => {
    const hdrs = natsHeaders();
    hdrs.set('traceparent', '00-not-a-trace-01');
    const extracted = propagator.extract(ROOT_CONTEXT, hdrs, natsHeaderGetter);
    assert.equal(trace.getSpanContext(extracted), undefined);
  });
});

describe('log lines and the active span', () => {
  test('a line written inside a span carries its trace_id and span_id; outside, none', () => {
    context.setGlobalContextManager(new StackContextManager().enable());
    try {
      const lines: Record<string, unknown>[] = [];
      const logger = createLogger({ node: 'test' }, 'info', {
        write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>),
      });
      context.with(trace.setSpanContext(ROOT_CONTEXT, parent), () =>
        logger.warn({ task_id: 'task-1' }, 'inside'),
      );
      logger.warn('outside');
      assert.equal(lines[0]?.['trace_id'], parent.traceId);
      assert.equal(lines[0]?.['span_id'], parent.spanId);
      assert.equal(lines[0]?.['task_id'], 'task-1');
      assert.equal(lines[1]?.['trace_id'], undefined);
    } finally {
      context.disable();
    }
  });
});

describe('log lines and errors', () => {
  test('an error is logged whole: type, message, stack and its cause', () => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ node: 'test' }, 'info', {
      write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>),
    });
    const cause = new Error('connection refused');
    logger.error({ err: new Error('could not store the outcome', { cause }) }, 'task failed');
    const [line] = lines;
    assert.equal(line?.['msg'], 'task failed');
    assert.equal(line?.['level'], 'error');
    assert.equal(line?.['node'], 'test');
    const err = line?.['err'] as Record<string, unknown>;
    assert.equal(err['type'], 'Error');
    assert.equal(err['message'], 'could not store the outcome');
    assert.match(String(err['stack']), /trace-propagation\.test\.ts/);
    assert.equal((err['cause'] as Record<string, unknown>)['message'], 'connection refused');
  });
});
