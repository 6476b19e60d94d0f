/**
 * The gateway's view of the model catalog (the `vigil-models` bucket): which models exist, of
 * what kind, and which version new requests run on. Kept current by a KV watch, so a gateway
 * answers "unknown model" without a round trip and keeps serving known models if NATS blips.
 */
import { Kvm, KvWatchInclude, type KV } from '@nats-io/kv';
import type { JetStreamClient } from '@nats-io/jetstream';
import {
  assetNames,
  decodeAs,
  ErrorCode,
  modelDeploymentSchema,
  VigilError,
  type ModelDeployment,
} from '../../protocol/index.js';
import type { Logger } from 'pino';

/** The models a gateway accepts. */
export interface ModelCatalog {
  get(name: string): ModelDeployment | undefined;
  list(): ModelDeployment[];
  /** Stops watching. Idempotent. */
  close(): void;
}

/** Loads the catalog through `js` (at an edge site: a client of the hub's domain) and keeps it current. */
export async function openModelCatalog(js: JetStreamClient, logger: Logger): Promise<ModelCatalog> {
  const kv: KV = await new Kvm(js).open(assetNames.modelBucket);
  const models = new Map<string, ModelDeployment>();
  const apply = (key: string, operation: string, value: Uint8Array): void => {
    if (operation !== 'PUT') {
      models.delete(key);
      return;
    }
    try {
      const deployment = decodeAs(modelDeploymentSchema, value, 'model deployment');
      models.set(deployment.name, deployment);
    } catch (err) {
      logger.error({ key, err }, 'ignoring unreadable model deployment');
    }
  };
  // Watch first, then read: an update between the two is seen twice, never missed.
  const updates = await kv.watch({ include: KvWatchInclude.UpdatesOnly });
  for await (const key of await kv.keys()) {
    const entry = await kv.get(key);
    if (entry) apply(entry.key, entry.operation, entry.value);
  }
  void (async () => {
    for await (const entry of updates) apply(entry.key, entry.operation, entry.value);
  })().catch((err: unknown) => logger.error({ err }, 'model catalog watch ended'));

  return {
    get: (name) => models.get(name),
    list: () => [...models.values()].sort((a, b) => a.name.localeCompare(b.name)),
    close: () => updates.stop(),
  };
}

/** The model named `name`; a 404 (`not_found`) when the catalog has none. */
export function requireModel(catalog: ModelCatalog, name: string): ModelDeployment {
  const model = catalog.get(name);
  if (!model) throw new VigilError(ErrorCode.NotFound, `model '${name}' does not exist`, false);
  return model;
}
