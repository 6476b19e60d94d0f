/**
 * The soak's memory verdict reads a line through every sample after warm-up, so a heap that
 * swings with its collector's cycle is judged flat, and one that grows is caught whatever phase
 * of the cycle its first and last samples fall in.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_GROWTH, MAX_SLOPE_MIB, trend } from './analysis.js';

const MINUTE = 60_000;
const WARMUP = 10 * MINUTE;

/** Samples every 10 s for 60 minutes: `base` MiB plus `rise` per 10 minutes plus a sawtooth. */
function series(base: number, rise: number, swing: number, periodMin: number) {
  const points: { t: number; v: number }[] = [];
  for (let t = 0; t <= 60 * MINUTE; t += 10_000) {
    const phase = (t % (periodMin * MINUTE)) / (periodMin * MINUTE);
    points.push({ t, v: base + (rise * t) / (10 * MINUTE) + swing * phase });
  }
  return points;
}

describe('soak memory trend', () => {
  test('a sawtooth around a flat level is flat', () => {
    // 20 MiB swings every 7 minutes, as nats-server's RSS swung with Go's collector in a soak.
    const t = trend(series(60, 0, 20, 7), WARMUP)!;
    assert.ok(Math.abs(t.slope) < MAX_SLOPE_MIB / 2, `slope ${t.slope}`);
    assert.ok(Math.abs(t.growthPercent) < MAX_GROWTH * 100, `growth ${t.growthPercent} %`);
    assert.equal(t.min, 60);
    assert.ok(t.max > 79);
  });

  test('growth of 2 MiB per 10 minutes under the same sawtooth is caught', () => {
    const t = trend(series(60, 2, 20, 7), WARMUP)!;
    assert.ok(t.slope > MAX_SLOPE_MIB, `slope ${t.slope}`);
    assert.ok(Math.abs(t.slope - 2) < 0.5, `slope ${t.slope} is near the 2 MiB per 10 minutes`);
  });

  test('a steady leak reads exactly', () => {
    const t = trend(series(100, 5, 0, 7), WARMUP)!;
    assert.equal(t.slope, 5);
    assert.equal(t.warm, 105);
    assert.equal(t.end, 130);
    assert.equal(t.growthPercent, 23.8);
  });

  test('samples before warm-up and missing samples are left out', () => {
    const points = series(100, 0, 0, 7).map((p) =>
      p.t < WARMUP ? { t: p.t, v: 1_000 } : p.t % 60_000 === 0 ? { t: p.t, v: undefined } : p,
    );
    const t = trend(points, WARMUP)!;
    assert.equal(t.slope, 0);
    assert.equal(t.max, 100);
    assert.equal(trend([{ t: WARMUP, v: 1 }], WARMUP), undefined);
  });
});
