/** The gateway's configuration, read once from the environment at start-up. */
import { NAME_TOKEN } from '../../protocol/index.js';
import type { Logger } from 'pino';
import { ConfigError, envInt, envList, envString } from '../common/env.js';
import { natsOptionsFromEnv, secondUserOptionsFromEnv } from '../common/nats-connection.js';
import {
  adminKeysSharedWithTenants,
  parseAdminKeyList,
  parseApiKeyList,
  readApiKeysFile,
  type ApiKeyEntry,
} from './api-keys.js';
import { GATEWAY_DEFAULTS, type GatewayOptions } from './gateway.js';
import { tenantLimitsFromEnv } from './tenant-limits.js';
import { TENANT_QUOTA_DEFAULTS } from './tenant-quota.js';
import { REGION_ROUTING_DEFAULTS } from './region-router.js';

/**
 * Reads:
 * - `VIGIL_REGION` (default `local`), `NATS_URL`, `NATS_USER`, `NATS_PASSWORD`, `NATS_TOKEN`
 * - `VIGIL_GATEWAY_HOST` (127.0.0.1), `VIGIL_GATEWAY_PORT` (8080)
 * - `VIGIL_API_KEYS` (`tenant:key,...`) and/or `VIGIL_API_KEYS_FILE` (JSON with sha256 digests
 *   and, optionally, `"tenants": {"<tenant>": limits}`)
 * - `VIGIL_TENANT_LIMITS` (JSON `{"<tenant>": limits}`, over the keys file's) and
 *   `VIGIL_DEFAULT_TENANT_LIMITS` (JSON limits for tenants not named), limits being
 *   `{"rate":{"perSecond":10,"burst":20},"reads":{...},"maxConcurrent":8,"quota":{"perDay":1000,"perMonth":20000}}`
 *   (see `tenant-limits.ts`); `VIGIL_QUOTA_MAX_LEASE` (100: most quota tasks leased at once),
 *   `VIGIL_QUOTA_OUTAGE_TASKS` (20: tasks per tenant and period served while the quota bucket
 *   cannot be reached; 0 refuses them)
 * - `NATS_NKEY`, `NATS_INBOX_PREFIX` (the `gateway` user), `NATS_CA`, `NATS_CERT`, `NATS_KEY`
 * - `VIGIL_ADMIN_KEYS` (`key,...`, 16+ characters each, none a tenant key): mounts the admin
 *   routes (`/v1/admin/*`); unset, they do not exist. With per-role credentials (`NATS_NKEY`)
 *   they need `VIGIL_ADMIN_NATS_NKEY` and `VIGIL_ADMIN_NATS_INBOX_PREFIX`: the admin user's seed
 *   file and inbox prefix, for a second connection (the gateway user may not write task records
 *   or dead letters, which replays do)
 * - `VIGIL_MAX_BODY_BYTES` (1 MiB), `VIGIL_MAX_SYNC_WAIT_MS` (30 s), `VIGIL_TASK_DEADLINE_MS`
 *   (10 min), `VIGIL_MAX_TASK_DEADLINE_MS` (24 h), `VIGIL_MAX_WAITERS` (10 000)
 * - `VIGIL_TLS_CERT`, `VIGIL_TLS_KEY` (PEM paths; both or neither)
 * - `VIGIL_SPILL_REGIONS` (`eu,us`: regions work may spill over to, nearest first; default none),
 *   `VIGIL_SPILL_QUEUE_DEPTH` (1000: a model's queue depth from which new work spills over)
 * - `VIGIL_EDGE_SITE`: this gateway runs at an edge site beside a leaf node (store-and-forward)
 * @throws ConfigError naming the first bad variable.
 */
export function gatewayOptionsFromEnv(env: NodeJS.ProcessEnv, logger: Logger): GatewayOptions {
  const apiKeys: ApiKeyEntry[] = [];
  if (env['VIGIL_API_KEYS']) apiKeys.push(...parseApiKeyList(env['VIGIL_API_KEYS']));
  const keysFilePath = env['VIGIL_API_KEYS_FILE'];
  const keysFile = keysFilePath ? readApiKeysFile(keysFilePath) : undefined;
  if (keysFile) apiKeys.push(...keysFile.keys);
  if (apiKeys.length === 0) {
    throw new ConfigError('no API keys: set VIGIL_API_KEYS=tenant:key or VIGIL_API_KEYS_FILE=path');
  }
  const tenantLimits = tenantLimitsFromEnv(
    env,
    keysFile?.tenants,
    `VIGIL_API_KEYS_FILE (${keysFilePath})`,
  );
  const keyless = Object.keys(tenantLimits?.tenants ?? {}).filter(
    (tenant) => !apiKeys.some((entry) => entry.tenant === tenant),
  );
  if (keyless.length > 0) logger.warn({ keyless }, 'limits set for tenants with no API key');
  const adminKeys = parseAdminKeyList(env['VIGIL_ADMIN_KEYS'] ?? '');
  if (adminKeysSharedWithTenants(adminKeys, apiKeys).length > 0) {
    throw new ConfigError('VIGIL_ADMIN_KEYS: an admin key must not also be a tenant API key');
  }
  const nats = natsOptionsFromEnv(env, '');
  // The admin routes' connection: same servers and TLS as the gateway's, as the admin user.
  const adminNats = secondUserOptionsFromEnv(env, 'VIGIL_ADMIN_NATS', nats);
  if (adminKeys.length > 0 && !adminNats && nats.nkeySeed) {
    throw new ConfigError(
      "VIGIL_ADMIN_KEYS needs VIGIL_ADMIN_NATS_NKEY (the admin user's seed file): the gateway " +
        'user may not write the task records and dead letters that replays change',
    );
  }
  if (adminNats && adminKeys.length === 0) {
    throw new ConfigError(
      'VIGIL_ADMIN_NATS_NKEY is set but VIGIL_ADMIN_KEYS is not: without admin routes a gateway ' +
        'must not hold admin credentials',
    );
  }
  const cert = env['VIGIL_TLS_CERT'];
  const key = env['VIGIL_TLS_KEY'];
  if (Boolean(cert) !== Boolean(key))
    throw new ConfigError('set both VIGIL_TLS_CERT and VIGIL_TLS_KEY, or neither');
  const options: GatewayOptions = {
    region: envString(env, 'VIGIL_REGION', 'local', NAME_TOKEN),
    nats,
    host: envString(env, 'VIGIL_GATEWAY_HOST', GATEWAY_DEFAULTS.host),
    port: envInt(env, 'VIGIL_GATEWAY_PORT', GATEWAY_DEFAULTS.port, 0, 65535),
    apiKeys,
    adminKeys,
    ...(tenantLimits === undefined ? {} : { tenantLimits }),
    quotaMaxLease: envInt(
      env,
      'VIGIL_QUOTA_MAX_LEASE',
      TENANT_QUOTA_DEFAULTS.maxLease,
      1,
      1_000_000,
    ),
    quotaOutageAllowance: envInt(
      env,
      'VIGIL_QUOTA_OUTAGE_TASKS',
      TENANT_QUOTA_DEFAULTS.outageAllowance,
      0,
    ),
    maxBodyBytes: envInt(
      env,
      'VIGIL_MAX_BODY_BYTES',
      GATEWAY_DEFAULTS.maxBodyBytes,
      1024,
      64 * 1024 * 1024,
    ),
    maxSyncWaitMs: envInt(
      env,
      'VIGIL_MAX_SYNC_WAIT_MS',
      GATEWAY_DEFAULTS.maxSyncWaitMs,
      0,
      3600_000,
    ),
    defaultTaskDeadlineMs: envInt(
      env,
      'VIGIL_TASK_DEADLINE_MS',
      GATEWAY_DEFAULTS.defaultTaskDeadlineMs,
      1000,
    ),
    maxTaskDeadlineMs: envInt(
      env,
      'VIGIL_MAX_TASK_DEADLINE_MS',
      GATEWAY_DEFAULTS.maxTaskDeadlineMs,
      1000,
    ),
    maxWaiters: envInt(env, 'VIGIL_MAX_WAITERS', GATEWAY_DEFAULTS.maxWaiters, 1),
    spillRegions: envList(env, 'VIGIL_SPILL_REGIONS', NAME_TOKEN),
    spillQueueDepth: envInt(
      env,
      'VIGIL_SPILL_QUEUE_DEPTH',
      REGION_ROUTING_DEFAULTS.spillQueueDepth,
      1,
    ),
    logger,
  };
  const edgeSite = env['VIGIL_EDGE_SITE'];
  if (edgeSite) options.edgeSite = envString(env, 'VIGIL_EDGE_SITE', '', NAME_TOKEN);
  if (cert && key) options.tls = { certFile: cert, keyFile: key };
  if (adminNats) options.adminNats = adminNats;
  return options;
}
