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
  /** Per-tenant limits, validated by the gateway's tenant limits (`tenant-limits.ts`). */
  tenants: z.record(z.string(), z.unknown()).optional(),
});

/** A keys file: the keys, and the tenants' limits when the file sets them. */
export interface ApiKeysFile {
  keys: ApiKeyEntry[];
  /** `{ "<tenant>": limits }`, not validated yet. */
  tenants?: Record<string, unknown>;
}

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

/**
 * Reads a JSON keys file: `{"keys": [{"tenant": "acme", "sha256": "<hex>"}], "tenants": {...}}`.
 */
export function readApiKeysFile(path: string): ApiKeysFile {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read API keys file ${path}: ${(err as Error).message}`, { cause: err });
  }
  return validate(keysFileSchema, json, path);
}

/**
 * Operator keys for the admin routes. They are kept apart from tenant keys: an admin key names no
 * tenant, so it cannot submit or read tasks, and a tenant key is never an admin key.
 */
export interface AdminKeyStore {
  /** True when `key` is an admin key. */
  isAdminKey(key: string): boolean;
  readonly size: number;
}

/** Shortest admin key accepted. */
export const MIN_ADMIN_KEY_LENGTH = 16;

/** Builds an admin key store; like tenant keys, the keys are held only as digests. */
export function createAdminKeyStore(keys: readonly string[]): AdminKeyStore {
  const digests = new Set(keys.map(digestApiKey));
  return {
    isAdminKey: (key) => digests.has(digestApiKey(key)),
    size: digests.size,
  };
}

/**
 * Parses `key,key` (the `VIGIL_ADMIN_KEYS` form).
 * @throws ValidationError naming the first key that is too short or not printable ASCII.
 */
export function parseAdminKeyList(text: string): string[] {
  const keys = text
    .split(',')
    .map((key) => key.trim())
    .filter((key) => key.length > 0);
  keys.forEach((key, i) =>
    validate(
      z
        .string()
        .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces')
        .min(MIN_ADMIN_KEY_LENGTH),
      key,
      `VIGIL_ADMIN_KEYS[${i}]`,
    ),
  );
  return keys;
}

/** The admin keys that are also tenant keys: a key must be one or the other, never both. */
export function adminKeysSharedWithTenants(
  adminKeys: readonly string[],
  tenantKeys: readonly ApiKeyEntry[],
): string[] {
  const tenantDigests = new Set(
    tenantKeys.map((entry) =>
      'key' in entry ? digestApiKey(entry.key) : entry.sha256.toLowerCase(),
    ),
  );
  return adminKeys.filter((key) => tenantDigests.has(digestApiKey(key)));
}
