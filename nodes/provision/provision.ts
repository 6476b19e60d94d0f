/**
 * Provisioning with admin rights: a region's streams and buckets, and the catalog entries of the
 * built-in models. Idempotent; run by the launcher at every start and by tests.
 */
import { Kvm } from '@nats-io/kv';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ModelRuntime } from '../../actors/index.js';
import {
  assetNames,
  encode,
  ENVELOPE_VERSION,
  ensureRegionAssets,
  type ModelDeployment,
  type RegionAssetsOptions,
} from '../../protocol/index.js';

/** Ensures a region's assets and registers `models` in the catalog where they are missing. */
export async function provisionRegion(
  nc: NatsConnection,
  assets: RegionAssetsOptions,
  models: readonly Pick<ModelRuntime, 'name' | 'version' | 'kind' | 'description'>[],
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await ensureRegionAssets(nc, jsm, assets);
  const catalog = await new Kvm(nc).open(assetNames.modelBucket);
  for (const model of models) {
    if (await catalog.get(model.name)) continue; // an operator's rollout state wins over the default
    const deployment: ModelDeployment = {
      v: ENVELOPE_VERSION,
      name: model.name,
      kind: model.kind,
      description: model.description,
      version: model.version,
      createdAt: Date.now(),
    };
    await catalog.create(model.name, encode(deployment)).catch(() => undefined);
  }
}
