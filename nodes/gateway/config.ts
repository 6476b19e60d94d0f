/** The gateway's configuration: what it reads, declared once, and the options built from it. */
import type { Logger } from 'pino';
import {
  custom,
  durationMs,
  file,
  host,
  int,
  name,
  names,
  nodeConfig,
  parseConfig,
  settingsGroup,
  type ConfigValues,
  type Env,
  LOG_SETTINGS,
  inboxPrefixSetting,
  NATS_SETTINGS,
  natsConnectOptions,
  nkeySeedSetting,
  secondUserOptions,
  TELEMETRY_SETTINGS,
} from '../common/index.js';
import {
  adminKeysSharedWithTenants,
  MIN_ADMIN_KEY_LENGTH,
  parseAdminKeyList,
  parseApiKeyList,
  readApiKeysFile,
  type ApiKeyEntry,
} from './api-keys.js';
import { GATEWAY_DEFAULTS, type GatewayOptions } from './gateway.js';
import { REGION_ROUTING_DEFAULTS } from './region-router.js';
import {
  parseTenantLimitsMap,
  TENANT_LIMITS_SETTINGS,
  tenantLimitsConfig,
  type TenantLimits,
} from './tenant-limits.js';
import { TENANT_QUOTA_DEFAULTS } from './tenant-quota.js';

/** A keys file as the gateway uses it: its keys, and its tenants' limits, validated. */
interface KeysFile {
  path: string;
  keys: ApiKeyEntry[];
  tenants?: Record<string, TenantLimits>;
}

function readKeysFile(path: string): KeysFile {
  const file = readApiKeysFile(path);
  return {
    path,
    keys: file.keys,
    ...(file.tenants === undefined
      ? {}
      : { tenants: parseTenantLimitsMap(file.tenants, `VIGIL_API_KEYS_FILE (${path}): tenants`) }),
  };
}

/** What the gateway itself reads. */
export const GATEWAY_SETTINGS = settingsGroup({
  id: 'gateway-settings',
  title: 'Gateway',
  settings: {
    region: name({
      name: 'VIGIL_REGION',
      default: 'local',
      meaning: 'The region this gateway serves: its requests go to this region first.',
    }),
    host: host({
      name: 'VIGIL_GATEWAY_HOST',
      default: GATEWAY_DEFAULTS.host,
      meaning: 'The interface the HTTP API listens on (`0.0.0.0`: every interface).',
    }),
    port: int({
      name: 'VIGIL_GATEWAY_PORT',
      min: 0,
      max: 65_535,
      default: GATEWAY_DEFAULTS.port,
      meaning: 'The port the HTTP API listens on; 0 takes a free one (the ready line says which).',
    }),
    apiKeys: custom({
      name: 'VIGIL_API_KEYS',
      secret: true,
      type: 'list of tenant:key',
      allowed: 'tenant:key pairs separated by commas, each key of 16 characters or more',
      parse: (raw) => parseApiKeyList(raw),
      meaning:
        'Tenants and their API keys, in plain text (tests, local use); `VIGIL_API_KEYS_FILE` ' +
        'keeps only digests. At least one of the two is needed.',
    }),
    keysFile: file({
      name: 'VIGIL_API_KEYS_FILE',
      holds: 'JSON file',
      read: readKeysFile,
      meaning:
        'Keys file: `{"keys": [{"tenant": "acme", "sha256": "<hex digest of the key>"}], ' +
        '"tenants": {"acme": limits}}`; `tenants` (optional) holds tenant limits.',
    }),
    adminKeys: custom({
      name: 'VIGIL_ADMIN_KEYS',
      secret: true,
      type: 'list of keys',
      allowed: `keys separated by commas, each of ${MIN_ADMIN_KEY_LENGTH} printable characters or more`,
      parse: (raw) => parseAdminKeyList(raw),
      meaning:
        'Operator keys for the admin routes (`/v1/admin/*`: dead letters, replay). Unset, the ' +
        'routes do not exist. No admin key may also be a tenant key.',
    }),
    adminNkeySeed: nkeySeedSetting(
      'VIGIL_ADMIN_NATS_NKEY',
      "The admin user's nkey seed file, for the admin routes' own connection: the gateway user " +
        'may not write the task records and dead letters that replays change.',
    ),
    adminInboxPrefix: inboxPrefixSetting(
      'VIGIL_ADMIN_NATS_INBOX_PREFIX',
      "The admin user's inbox prefix (`_INBOX_admin`).",
    ),
    quotaMaxLease: int({
      name: 'VIGIL_QUOTA_MAX_LEASE',
      min: 1,
      max: 1_000_000,
      default: TENANT_QUOTA_DEFAULTS.maxLease,
      meaning:
        'Most quota tasks this gateway leases at once from the shared counter (it leases an ' +
        'eighth of what is left, up to this).',
    }),
    quotaOutageTasks: int({
      name: 'VIGIL_QUOTA_OUTAGE_TASKS',
      min: 0,
      default: TENANT_QUOTA_DEFAULTS.outageAllowance,
      meaning:
        'Tasks per tenant and period served while the quota bucket cannot be reached, counted ' +
        'when it answers again; 0 refuses them (fails closed).',
    }),
    maxBodyBytes: int({
      name: 'VIGIL_MAX_BODY_BYTES',
      unit: 'bytes',
      min: 1024,
      max: 64 * 1024 * 1024,
      default: GATEWAY_DEFAULTS.maxBodyBytes,
      meaning: 'Largest request body accepted; larger ones get 413.',
    }),
    bodyTimeoutMs: durationMs({
      name: 'VIGIL_BODY_TIMEOUT_MS',
      min: 100,
      max: 600_000,
      default: GATEWAY_DEFAULTS.bodyTimeoutMs,
      meaning:
        'Longest a request body may take to arrive once its handler starts reading it; past ' +
        'it the client gets 408 and the connection is closed (a slow body, or a chunk size it ' +
        'never fills, holds nothing longer).',
    }),
    headersTimeoutMs: durationMs({
      name: 'VIGIL_HEADERS_TIMEOUT_MS',
      min: 100,
      max: 600_000,
      default: GATEWAY_DEFAULTS.headersTimeoutMs,
      meaning:
        "Longest a request's headers may take to arrive (slow-loris clients); past it the " +
        'client gets 408 and the connection is closed.',
    }),
    maxSyncWaitMs: durationMs({
      name: 'VIGIL_MAX_SYNC_WAIT_MS',
      min: 0,
      max: 3_600_000,
      default: GATEWAY_DEFAULTS.maxSyncWaitMs,
      meaning:
        'Longest a synchronous call waits for its result (also the cap of `Prefer: wait`) ' +
        'before it gets 202 and the task URL.',
    }),
    streamKeepAliveMs: durationMs({
      name: 'VIGIL_STREAM_KEEPALIVE_MS',
      min: 1000,
      max: 120_000,
      default: GATEWAY_DEFAULTS.streamKeepAliveMs,
      meaning:
        'How often an event stream with nothing to say sends a comment line, so that proxies ' +
        'and load balancers (idle timeouts of 30-60 s are common) keep it open while a task ' +
        'waits in the queue or a model thinks.',
    }),
    streamAbandonGraceMs: durationMs({
      name: 'VIGIL_STREAM_ABANDON_GRACE_MS',
      min: 0,
      max: 3_600_000,
      default: GATEWAY_DEFAULTS.streamAbandonGraceMs,
      meaning:
        'How long the task of an OpenAI stream goes on after its client disconnected, for the ' +
        'client to resume the stream (same Idempotency-Key, Last-Event-ID) at any gateway; then ' +
        'it is cancelled and its model run stopped. A stream without an Idempotency-Key cannot ' +
        'be resumed: its task is cancelled at once.',
    }),
    tcpKeepAliveMs: durationMs({
      name: 'VIGIL_TCP_KEEPALIVE_MS',
      min: 1000,
      max: 7_200_000,
      default: GATEWAY_DEFAULTS.tcpKeepAliveMs,
      meaning:
        "Idle time after which the kernel probes a client's connection (TCP keep-alive): a " +
        'client that vanished without closing (a dropped NAT entry, a dead host) frees its ' +
        'socket and its stream, and middleboxes see traffic on long quiet streams.',
    }),
    taskDeadlineMs: durationMs({
      name: 'VIGIL_TASK_DEADLINE_MS',
      min: 1000,
      default: GATEWAY_DEFAULTS.defaultTaskDeadlineMs,
      meaning: "A task's deadline when the request sets none.",
    }),
    maxTaskDeadlineMs: durationMs({
      name: 'VIGIL_MAX_TASK_DEADLINE_MS',
      min: 1000,
      default: GATEWAY_DEFAULTS.maxTaskDeadlineMs,
      meaning: 'Longest deadline a request may ask for.',
    }),
    maxWaiters: int({
      name: 'VIGIL_MAX_WAITERS',
      min: 1,
      default: GATEWAY_DEFAULTS.maxWaiters,
      meaning: 'Most requests waiting for a result at once; past it, synchronous calls get 503.',
    }),
    tlsCert: file({
      name: 'VIGIL_TLS_CERT',
      holds: 'PEM file',
      meaning: "Serve HTTPS with this certificate (and `VIGIL_TLS_KEY`'s key).",
    }),
    tlsKey: file({ name: 'VIGIL_TLS_KEY', holds: 'PEM file', meaning: "The certificate's key." }),
    spillRegions: names({
      name: 'VIGIL_SPILL_REGIONS',
      default: [],
      defaultText: 'none',
      meaning:
        'Regions work may spill over to, nearest first, when this region has no healthy actor ' +
        "for a model or the model's queue is deep (`eu,us`).",
    }),
    spillQueueDepth: int({
      name: 'VIGIL_SPILL_QUEUE_DEPTH',
      min: 1,
      default: REGION_ROUTING_DEFAULTS.spillQueueDepth,
      meaning: "A model's queue depth in this region from which new work spills over.",
    }),
    edgeSite: name({
      name: 'VIGIL_EDGE_SITE',
      meaning:
        'This gateway runs at an edge site beside a leaf node: work for its region is accepted ' +
        "into the site's own stream (store-and-forward) while the link to the hub is down.",
    }),
  },
  rules: [
    {
      text: 'At least one API key: `VIGIL_API_KEYS` or `VIGIL_API_KEYS_FILE`.',
      variables: ['VIGIL_API_KEYS', 'VIGIL_API_KEYS_FILE'],
      check: (v) =>
        (v.apiKeys?.length ?? 0) + (v.keysFile?.keys.length ?? 0) === 0
          ? 'no API keys: set VIGIL_API_KEYS=tenant:key or VIGIL_API_KEYS_FILE=path'
          : undefined,
    },
    {
      text: 'No admin key is also a tenant key.',
      variables: ['VIGIL_ADMIN_KEYS'],
      check: (v) =>
        adminKeysSharedWithTenants(v.adminKeys ?? [], apiKeysOf(v)).length > 0
          ? 'VIGIL_ADMIN_KEYS: an admin key must not also be a tenant API key'
          : undefined,
    },
    {
      text: '`VIGIL_ADMIN_NATS_NKEY` only with `VIGIL_ADMIN_KEYS`: a gateway without admin routes holds no admin credentials.',
      variables: ['VIGIL_ADMIN_NATS_NKEY', 'VIGIL_ADMIN_KEYS'],
      check: (v) =>
        v.adminNkeySeed !== undefined && (v.adminKeys?.length ?? 0) === 0
          ? 'VIGIL_ADMIN_NATS_NKEY is set but VIGIL_ADMIN_KEYS is not: without admin routes a ' +
            'gateway must not hold admin credentials'
          : undefined,
    },
    {
      text: '`VIGIL_TLS_CERT` and `VIGIL_TLS_KEY` are set together, or neither.',
      variables: ['VIGIL_TLS_CERT', 'VIGIL_TLS_KEY'],
      check: (v) =>
        (v.tlsCert === undefined) !== (v.tlsKey === undefined)
          ? 'set both VIGIL_TLS_CERT and VIGIL_TLS_KEY, or neither'
          : undefined,
    },
  ],
});

/** Every API key, from the variable and the keys file. */
function apiKeysOf(v: {
  apiKeys: ApiKeyEntry[] | undefined;
  keysFile: KeysFile | undefined;
}): ApiKeyEntry[] {
  return [...(v.apiKeys ?? []), ...(v.keysFile?.keys ?? [])];
}

/** Everything the gateway reads. */
export const GATEWAY_CONFIG = nodeConfig({
  node: 'gateway',
  title: 'Gateway',
  usage: 'node dist/nodes/gateway/main.js [--help]',
  summary:
    'The HTTP API (Hono): authenticates tenants, validates requests and publishes them into ' +
    "the region's request stream; answers task reads, the OpenAI-compatible routes and, with " +
    'admin keys, the admin routes.',
  groups: {
    gateway: GATEWAY_SETTINGS,
    limits: TENANT_LIMITS_SETTINGS,
    log: LOG_SETTINGS,
    nats: NATS_SETTINGS,
    telemetry: TELEMETRY_SETTINGS,
  },
  rules: [
    {
      text:
        'With per-role credentials (`NATS_NKEY`), `VIGIL_ADMIN_KEYS` needs ' +
        "`VIGIL_ADMIN_NATS_NKEY`: the admin routes' connection is the admin user's.",
      variables: ['VIGIL_ADMIN_KEYS', 'VIGIL_ADMIN_NATS_NKEY'],
      check: (v) =>
        (v.gateway.adminKeys?.length ?? 0) > 0 &&
        v.gateway.adminNkeySeed === undefined &&
        v.nats.nkeySeed !== undefined
          ? "VIGIL_ADMIN_KEYS needs VIGIL_ADMIN_NATS_NKEY (the admin user's seed file): the " +
            'gateway user may not write the task records and dead letters that replays change'
          : undefined,
    },
  ],
});

/** The gateway's parsed configuration. */
export type GatewaySettings = ConfigValues<(typeof GATEWAY_CONFIG)['groups']>;

/** The gateway's options from its parsed configuration; warns about limits of keyless tenants. */
export function gatewayOptions(settings: GatewaySettings, logger: Logger): GatewayOptions {
  const { gateway: g, limits } = settings;
  const apiKeys = apiKeysOf(g);
  const tenantLimits = tenantLimitsConfig(g.keysFile?.tenants, limits.tenants, limits.defaults);
  const keyless = Object.keys(tenantLimits?.tenants ?? {}).filter(
    (tenant) => !apiKeys.some((entry) => entry.tenant === tenant),
  );
  if (keyless.length > 0) logger.warn({ keyless }, 'limits set for tenants with no API key');
  const nats = natsConnectOptions(settings.nats, '');
  // The admin routes' connection: same servers and TLS as the gateway's, as the admin user.
  const adminNats = secondUserOptions(nats, g.adminNkeySeed, g.adminInboxPrefix);
  return {
    region: g.region,
    nats,
    host: g.host,
    port: g.port,
    apiKeys,
    adminKeys: g.adminKeys ?? [],
    ...(tenantLimits === undefined ? {} : { tenantLimits }),
    quotaMaxLease: g.quotaMaxLease,
    quotaOutageAllowance: g.quotaOutageTasks,
    maxBodyBytes: g.maxBodyBytes,
    bodyTimeoutMs: g.bodyTimeoutMs,
    headersTimeoutMs: g.headersTimeoutMs,
    maxSyncWaitMs: g.maxSyncWaitMs,
    streamKeepAliveMs: g.streamKeepAliveMs,
    tcpKeepAliveMs: g.tcpKeepAliveMs,
    streamAbandonGraceMs: g.streamAbandonGraceMs,
    defaultTaskDeadlineMs: g.taskDeadlineMs,
    maxTaskDeadlineMs: g.maxTaskDeadlineMs,
    maxWaiters: g.maxWaiters,
    spillRegions: g.spillRegions,
    spillQueueDepth: g.spillQueueDepth,
    ...(g.edgeSite === undefined ? {} : { edgeSite: g.edgeSite }),
    ...(g.tlsCert === undefined || g.tlsKey === undefined
      ? {}
      : { tls: { certFile: g.tlsCert, keyFile: g.tlsKey } }),
    ...(adminNats === undefined ? {} : { adminNats }),
    logger,
  };
}

/**
 * The gateway's options from `env` (tests; `main.ts` goes through `startUp`).
 * @throws ConfigError naming every bad variable.
 */
export function gatewayOptionsFromEnv(env: Env, logger: Logger): GatewayOptions {
  return gatewayOptions(parseConfig(GATEWAY_CONFIG, env), logger);
}
