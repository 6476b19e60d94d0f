/**
 * The controller's `shift-traffic` as a gateway sees it, on a real nats-server: a route override
 * in the control bucket moves a model's new work off the avoided region while another region is
 * healthy, falls back to it when none is, and is lifted by deleting the key. The action runner
 * keeps one holder per alert in each override and hold, and lifts only the resolving alert's.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { silentLogger } from '../../nodes/common/index.js';
import { assetNames, ensureRegionAssets, type ActorHealth } from '../../protocol/index.js';
import { createRegionRouter, watchRouteOverrides } from '../../nodes/gateway/index.js';
import {
  ActionType,
  createActionRunner,
  rolloutHoldKey,
  routeOverrideKey,
  Scope,
  type ActionRecord,
  type RolloutHold,
  type RouteOverride,
} from '../../nodes/controller/index.js';
import { startTestNats } from '../harness/nats.js';
import { waitFor } from '../harness/edge.js';

/** Health as the test sets it: the regions in `healthy` have an actor for every model. */
function healthOf(healthy: Set<string>): ActorHealth {
  return {
    hasHealthyActor: (_model, region) => Promise.resolve(healthy.has(region ?? 'eu')),
    list: () => [],
    close: () => undefined,
  };
}

describe('route overrides', () => {
  test('avoided regions go last while another is healthy, and the override can be lifted', async () => {
    await using nats = await startTestNats();
    const nc = await connect({ servers: nats.url });
    try {
      await ensureRegionAssets(nc, await jetstreamManager(nc), { region: 'eu' });
      const control = await new Kvm(nc).open(assetNames.controlBucket);
      const healthy = new Set(['eu', 'us']);
      const router = createRegionRouter(
        { home: 'eu', spillRegions: ['us'] },
        healthOf(healthy),
        await jetstreamManager(nc),
        silentLogger,
        watchRouteOverrides(jetstream(nc), silentLogger),
      );
      try {
        const first = async (model: string): Promise<string> =>
          (await router.plan(model)).regions[0]!;
        assert.equal(await first('echo'), 'eu', 'home first without an override');

        await control.put(routeOverrideKey('echo'), JSON.stringify({ avoid: ['eu'] }));
        await waitFor('the override to apply', async () =>
          (await first('echo')) === 'us' ? true : undefined,
        );
        assert.deepEqual((await router.plan('echo')).regions, ['us', 'eu']);
        assert.equal(await first('hash-embed'), 'eu', 'other models are not moved');

        healthy.delete('us');
        assert.equal(await first('echo'), 'eu', 'the avoided region still serves when alone');
        healthy.add('us');

        // A malformed override is ignored, not obeyed and not fatal.
        await control.put(routeOverrideKey('chat'), JSON.stringify({ avoid: 'eu' }));
        await control.delete(routeOverrideKey('echo'));
        await waitFor('the override to be lifted', async () =>
          (await first('echo')) === 'eu' ? true : undefined,
        );
        assert.equal(await first('chat'), 'eu');
      } finally {
        router.close();
      }
    } finally {
      await nc.close();
    }
  });

  test('each alert holds its own share of an override or hold, and lifting removes only that', async () => {
    await using nats = await startTestNats();
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      await ensureRegionAssets(nc, jsm, { region: 'eu' });
      const control = await new Kvm(nc).open(assetNames.controlBucket);
      const runner = createActionRunner(nc, jetstream(nc), control, 'ctl-test');
      const router = createRegionRouter(
        { home: 'eu', spillRegions: ['us', 'ap'] },
        healthOf(new Set(['eu', 'us', 'ap'])),
        jsm,
        silentLogger,
        watchRouteOverrides(jetstream(nc), silentLogger),
      );
      const subject = (region: string) => ({
        scope: Scope.Model,
        region,
        model: 'echo',
        key: `${region}.echo`,
      });
      const avoid = async () =>
        (await control.get(routeOverrideKey('echo')))?.json<RouteOverride>().avoid;
      const ok = (record: ActionRecord) => {
        assert.equal(record.ok, true, JSON.stringify(record.detail));
        return record;
      };
      try {
        ok(await runner.run(ActionType.ShiftTraffic, 'queue-deep', subject('eu')));
        ok(await runner.run(ActionType.ShiftTraffic, 'queue-deep', subject('eu'))); // again: one holder
        ok(await runner.run(ActionType.ShiftTraffic, 'slow', subject('eu')));
        ok(await runner.run(ActionType.ShiftTraffic, 'queue-deep', subject('us')));
        assert.deepEqual(await avoid(), ['eu', 'us']);
        const stored = (await control.get(routeOverrideKey('echo')))!.json<RouteOverride>();
        assert.equal(stored.holders.length, 3, 'one holder per (rule, subject)');
        await waitFor('the gateway to avoid eu and us', async () =>
          (await router.plan('echo')).regions.join() === 'ap,eu,us' ? true : undefined,
        );

        ok(await runner.lift(ActionType.ShiftTraffic, 'queue-deep', subject('eu')));
        assert.deepEqual(await avoid(), ['eu', 'us'], 'rule slow still holds eu');
        ok(await runner.lift(ActionType.ShiftTraffic, 'queue-deep', subject('us')));
        assert.deepEqual(await avoid(), ['eu']);
        const last = ok(await runner.lift(ActionType.ShiftTraffic, 'slow', subject('eu')));
        assert.equal(last.phase, 'lift');
        assert.equal(last.detail['deleted'], true);
        assert.equal((await control.get(routeOverrideKey('echo')))?.operation, 'DEL');
        await waitFor('the gateway to send echo home again', async () =>
          (await router.plan('echo')).regions[0] === 'eu' ? true : undefined,
        );
        // Lifting what is not there changes nothing and succeeds.
        ok(await runner.lift(ActionType.ShiftTraffic, 'slow', subject('eu')));

        // Rollout holds: the same bookkeeping, no avoid list.
        ok(await runner.run(ActionType.HoldRollout, 'actor-failed', subject('eu')));
        ok(await runner.run(ActionType.HoldRollout, 'breaker-open', subject('eu')));
        ok(await runner.lift(ActionType.HoldRollout, 'actor-failed', subject('eu')));
        const hold = (await control.get(rolloutHoldKey('echo')))!.json<RolloutHold>();
        assert.deepEqual(
          hold.holders.map((h) => h.rule),
          ['breaker-open'],
        );
        ok(await runner.lift(ActionType.HoldRollout, 'breaker-open', subject('eu')));
        assert.equal((await control.get(rolloutHoldKey('echo')))?.operation, 'DEL');

        // A restart cannot be lifted: recorded as a failed lift, not thrown.
        const refused = await runner.lift(ActionType.RestartActor, 'stuck', subject('eu'));
        assert.equal(refused.ok, false);

        // Every run and lift is in the control log, in order.
        const info = await jsm.streams.info(assetNames.controlLogStream);
        const phases: string[] = [];
        for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
          const record = (await jsm.streams.getMessage(assetNames.controlLogStream, { seq }))!;
          phases.push(record.json<ActionRecord>().phase);
        }
        assert.deepEqual(phases, [
          ...['apply', 'apply', 'apply', 'apply', 'lift', 'lift', 'lift', 'lift'],
          ...['apply', 'apply', 'lift', 'lift', 'lift'],
        ]);
      } finally {
        router.close();
      }
    } finally {
      await nc.close();
    }
  });
});
