/**
 * Bearer API keys mapped to tenants. Keys are held only as SHA-256 digests, so a keys file can be
 * shared with operators without sharing credentials, and lookups compare digests, not secrets.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { NAME_TOKEN, validate } from '../../protocol/index.js';

/** Maps presented keys to tenants. */
export interface ApiKeyStore {
  /** The tenant owning `key`, or `undefined`. */
  tenantOf(key: string): string | undefined;
  readonly size: number;
}

/** A key as configured: the plain key (env, tests) or its digest (files). */
export type ApiKeyEntry = { tenant: string; key: string } | { tenant: string; sha256: string };

/** Hex SHA-256 of an API key, as stored in keys files. */
export function digestApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** Presented keys remembered after a successful check, so a busy client is hashed once. */
export const VERIFIED_KEY_CACHE_SIZE = 1024;

/** Builds a store from entries. */
export function createApiKeyStore(entries: readonly ApiKeyEntry[]): ApiKeyStore {
  const tenants = new Map<string, string>();
  for (const entry of entries) {
    tenants.set(
      'key' in entry ? digestApiKey(entry.key) : entry.sha256.toLowerCase(),
      entry.tenant,
    );
  }
  // Only keys that passed are cached: wrong keys are hashed every time and cannot fill the cache.
  const verified = new Map<string, string>();
  return {
    tenantOf(key) {
      const cached = verified.get(key);
      if (cached !== undefined) return cached;
      const tenant = tenants.get(digestApiKey(key));
      if (tenant !== undefined) {
        if (verified.size >= VERIFIED_KEY_CACHE_SIZE) verified.clear();
        verified.set(key, tenant);
      }
      return tenant;
    },
    size: tenants.size,
  };
}

const tenant = z.string().regex(NAME_TOKEN);
const keysFileSchema = z.object({
  keys: z.array(
    z.union([
      z.object({ tenant, sha256: z.string().regex(/^[0-9a-fA-F]{64}$/) }),
      z.object({ tenant, key: z.string().min(16) }),
    ]),
  ),
});

/** Parses `tenant:key,tenant:key` (the `VIGIL_API_KEYS` form). */
export function parseApiKeyList(text: string): ApiKeyEntry[] {
  return text
    .split(',')
    .map((pair) => pair.trim())
    .filter((pair) => pair.length > 0)
    .map((pair, i) => {
      const colon = pair.indexOf(':');
      const entry = { tenant: pair.slice(0, colon), key: pair.slice(colon + 1) };
      return validate(
        keysFileSchema.shape.keys.element,
        colon > 0 ? entry : {},
        `VIGIL_API_KEYS[${i}]`,
      );
    });
}

/** Reads a JSON keys file: `{"keys": [{"tenant": "acme", "sha256": "<hex>"}]}`. */
export function readApiKeysFile(path: string): ApiKeyEntry[] {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read API keys file ${path}: ${(err as Error).message}`, { cause: err });
  }
  return validate(keysFileSchema, json, path).keys;
}
