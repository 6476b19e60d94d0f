/**
 * Provisioning with admin rights: a region's streams and buckets, and the catalog entries of the
 * built-in models. Idempotent; run by the launcher at every start and by tests.
 */
import { Kvm } from '@nats-io/kv';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ModelRuntime } from '../../actors/index.js';
import { isDeepStrictEqual } from 'node:util';
import {
  assetNames,
  decodeAs,
  encode,
  ENVELOPE_VERSION,
  ensureRegionAssets,
  modelDeploymentSchema,
  type ModelDeployment,
  type RegionAssetsOptions,
} from '../../protocol/index.js';

/** Ensures a region's assets and registers `models` in the catalog where they are missing. */
export async function provisionRegion(
  nc: NatsConnection,
  assets: RegionAssetsOptions,
  models: readonly Pick<
    ModelRuntime,
    'name' | 'version' | 'kind' | 'description' | 'capabilities'
  >[],
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await ensureRegionAssets(nc, jsm, assets);
  const catalog = await new Kvm(nc).open(assetNames.modelBucket);
  for (const model of models) {
    const capabilities = model.capabilities ? { capabilities: model.capabilities } : {};
    const entry = await catalog.get(model.name);
    if (entry?.operation === 'PUT') {
      // An operator's rollout state wins over the default; only what the model declares is
      // brought up to date (conditional: a concurrent change wins).
      const stored = decodeAs(modelDeploymentSchema, entry.value, 'model deployment');
      if (isDeepStrictEqual(stored.capabilities, model.capabilities)) continue;
      const updated = { ...stored, ...capabilities };
      await catalog.update(model.name, encode(updated), entry.revision).catch(() => undefined);
      continue;
    }
    const deployment: ModelDeployment = {
      v: ENVELOPE_VERSION,
      name: model.name,
      kind: model.kind,
      description: model.description,
      version: model.version,
      createdAt: Date.now(),
      ...capabilities,
    };
    await catalog.create(model.name, encode(deployment)).catch(() => undefined);
  }
}
