/**
 * The controller's `shift-traffic` as a gateway sees it, on a real nats-server: a route override
 * in the control bucket moves a model's new work off the avoided region while another region is
 * healthy, falls back to it when none is, and is lifted by deleting the key.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { silentLogger } from '../../actors/log.js';
import { assetNames, ensureRegionAssets } from '../../protocol/index.js';
import type { ActorHealth } from '../../nodes/gateway/actor-health.js';
import { createRegionRouter, watchRouteOverrides } from '../../nodes/gateway/region-router.js';
import { routeOverrideKey } from '../../nodes/controller/index.js';
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
});
