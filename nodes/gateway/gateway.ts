/**
 * A running gateway: NATS connection, task client, model catalog and the HTTP server around the
 * Hono app. `main.ts` builds the options from the environment; tests and benches call this.
 */
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { getRequestListener, type ServerType } from '@hono/node-server';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  createDeadLetterAdmin,
  createVigilClient,
  HUB_DOMAIN,
  newTaskId,
  type DeadLetterAdmin,
  type VigilClient,
  watchActorHealth,
  type ActorHealth,
} from '../../protocol/index.js';
import type { Logger } from 'pino';
import {
  observeNatsConnection,
  observeQueues,
  connectNats,
  type NatsConnectOptions,
} from '../common/index.js';
import { createAdminKeyStore, createApiKeyStore, type ApiKeyEntry } from './api-keys.js';
import {
  answerClientError,
  answerConnect,
  answerExpectation,
  answerRequestError,
} from './client-errors.js';
import { createGatewayApp, type GatewayAppDeps, type GatewayAppOptions } from './app.js';
import { openModelCatalog, type ModelCatalog } from './catalog.js';
import {
  createTenantLimiter,
  hasQuotas,
  quotaLimitsOf,
  type TenantLimitsConfig,
} from './tenant-limits.js';
import { openTenantQuota, withTenantQuota, type TenantQuota } from './tenant-quota.js';
import { createRegionRouter, watchRouteOverrides, type RegionRouter } from './region-router.js';
import { createClientRetries, type ClientRetries } from './client-retries.js';
import { createTaskCanceller, type TaskCanceller } from './task-cancel.js';

/** Everything a gateway needs to start. */
export interface GatewayOptions extends GatewayAppOptions {
  region: string;
  nats: NatsConnectOptions;
  /** Interface to listen on. Default 127.0.0.1. */
  host: string;
  /** Port; 0 = any free port. */
  port: number;
  apiKeys: readonly ApiKeyEntry[];
  /** Operator keys for the admin routes (`/v1/admin/*`). None (default): the routes do not exist. */
  adminKeys?: readonly string[];
  /**
   * A second connection, as the admin user, for the admin routes (replays write task records and
   * dead letters, which the gateway user may not). Default: the gateway's own connection.
   */
  adminNats?: NatsConnectOptions;
  /** Most requests waiting for a result at once; past it sync calls get 503. */
  maxWaiters: number;
  /** Per-tenant rates, concurrency and task quotas. Absent: tenants are not limited. */
  tenantLimits?: TenantLimitsConfig;
  /** Most quota tasks a gateway leases at once. Default 100. */
  quotaMaxLease?: number;
  /** Quota tasks per tenant and period served while the quota bucket is unreachable. Default 20. */
  quotaOutageAllowance?: number;
  /** Regions work may spill over to, nearest first. */
  spillRegions: readonly string[];
  /** A model's queue depth in a region from which new work for it goes to another region. */
  spillQueueDepth: number;
  /**
   * Set when this gateway runs at an edge site beside a leaf node: home-region work is accepted
   * into the site's stream (store-and-forward) and hub state is read through the hub's domain.
   */
  edgeSite?: string;
  /** Idle time before the kernel probes a client connection (TCP keep-alive), ms. */
  tcpKeepAliveMs: number;
  /** Serve HTTPS with this certificate and key (PEM file paths). */
  tls?: { certFile: string; keyFile: string };
  logger: Logger;
}

/** Past the headers' and the body's timeouts, before the server closes a request itself, ms. */
const REQUEST_TIMEOUT_SLACK_MS = 5_000;

/** Defaults of {@link GatewayOptions}. */
export const GATEWAY_DEFAULTS = {
  host: '127.0.0.1',
  port: 8080,
  maxBodyBytes: 1024 * 1024,
  bodyTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  maxSyncWaitMs: 30_000,
  streamKeepAliveMs: 15_000,
  streamAbandonGraceMs: 30_000,
  tcpKeepAliveMs: 30_000,
  defaultTaskDeadlineMs: 10 * 60_000,
  maxTaskDeadlineMs: 24 * 3600_000,
  maxWaiters: 10_000,
} as const;

/** A started gateway. */
export interface Gateway {
  /** Base URL, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  readonly client: VigilClient;
  /** Stops accepting connections, finishes open requests, disconnects. Idempotent. */
  close(): Promise<void>;
}

/** What a gateway holds open besides its HTTP server and its NATS connection. */
interface GatewayParts {
  client: VigilClient;
  catalog: ModelCatalog;
  health: ActorHealth;
  router: RegionRouter;
  /** The admin routes' connection, when they have their own user. */
  adminNc?: NatsConnection;
  /** Present when the admin routes exist. */
  deadLetters?: DeadLetterAdmin;
  /** Present when some tenant has a task quota. */
  quota?: TenantQuota;
  canceller: TaskCanceller;
  retries: ClientRetries;
}

/**
 * Starts a gateway: connects, opens the parts the routes read (client, catalog, health, router,
 * admin, quota), builds the app on them and listens.
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { logger } = options;
  const gatewayId = `gw-${newTaskId().slice(0, 10)}`;
  const nc: NatsConnection = await connectNats(
    { ...options.nats, name: options.nats.name || gatewayId },
    logger,
  );
  let parts: GatewayParts;
  try {
    parts = await openGatewayParts(nc, options, gatewayId);
  } catch (err) {
    await nc.close();
    throw err;
  }
  const app = createGatewayApp(appDeps(nc, options, parts));
  const server = await serveHttp(app.fetch, options);
  const address = server.address() as AddressInfo;
  const url = `${options.tls ? 'https' : 'http'}://${options.host}:${address.port}`;
  logger.info({ url, region: options.region, gatewayId }, 'gateway listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    client: parts.client,
    close(): Promise<void> {
      closing ??= closeGateway(server, parts, nc);
      return closing;
    },
  };
}

/** Opens what the routes read; on a failure, closes the admin connection it opened. */
async function openGatewayParts(
  nc: NatsConnection,
  options: GatewayOptions,
  gatewayId: string,
): Promise<GatewayParts> {
  const { logger } = options;
  const client = await createVigilClient(nc, {
    region: options.region,
    otherRegions: options.spillRegions,
    ...(options.edgeSite === undefined ? {} : { edgeSite: options.edgeSite }),
    clientId: gatewayId,
    maxWaiters: options.maxWaiters,
  });
  // Hub state (catalog, heartbeats, queues) is in the hub's domain; an edge site reaches it
  // across its leaf link.
  const hubJs =
    options.edgeSite === undefined ? jetstream(nc) : jetstream(nc, { domain: HUB_DOMAIN });
  const catalog = await openModelCatalog(hubJs, logger);
  const health = await watchActorHealth(hubJs, options.region, options.spillRegions, logger);
  const router = createRegionRouter(
    {
      home: options.region,
      spillRegions: options.spillRegions,
      spillQueueDepth: options.spillQueueDepth,
    },
    health,
    await hubJs.jetstreamManager(),
    logger,
    watchRouteOverrides(hubJs, logger),
  );
  observeQueues({
    jsm: await hubJs.jetstreamManager(),
    region: options.region,
    models: () => catalog.list().map((model) => model.name),
  });
  observeNatsConnection(nc, 'gateway');
  const admin = await openAdmin(nc, options, gatewayId);
  try {
    const quota = await openQuota(hubJs, options);
    const canceller = createTaskCanceller(hubJs);
    const retries = createClientRetries(hubJs);
    return {
      client,
      catalog,
      health,
      router,
      canceller,
      retries,
      ...admin,
      ...(quota ? { quota } : {}),
    };
  } catch (err) {
    await admin.adminNc?.close();
    throw err;
  }
}

/**
 * The admin routes' dead-letter access, over a second connection as the admin user when one is
 * configured (replays write task records and dead letters, which the gateway user may not).
 * Nothing when there are no admin keys: the routes do not exist.
 */
async function openAdmin(
  nc: NatsConnection,
  options: GatewayOptions,
  gatewayId: string,
): Promise<Pick<GatewayParts, 'adminNc' | 'deadLetters'>> {
  if ((options.adminKeys ?? []).length === 0) return {};
  const adminNc = options.adminNats
    ? await connectNats(
        { ...options.adminNats, name: options.adminNats.name || `${gatewayId}-admin` },
        options.logger,
      )
    : undefined;
  try {
    const deadLetters = await createDeadLetterAdmin(adminNc ?? nc, { region: options.region });
    return { ...(adminNc ? { adminNc } : {}), deadLetters };
  } catch (err) {
    await adminNc?.close();
    throw err;
  }
}

/** The shared task-quota counters, when some tenant has a quota. */
async function openQuota(
  hubJs: JetStreamClient,
  options: GatewayOptions,
): Promise<TenantQuota | undefined> {
  if (!options.tenantLimits || !hasQuotas(options.tenantLimits)) return undefined;
  return openTenantQuota(hubJs, {
    ...(options.quotaMaxLease === undefined ? {} : { maxLease: options.quotaMaxLease }),
    ...(options.quotaOutageAllowance === undefined
      ? {}
      : { outageAllowance: options.quotaOutageAllowance }),
    logger: options.logger,
  });
}

/** The app's dependencies: the parts, with the tenant limits and quota wrapped around them. */
function appDeps(nc: NatsConnection, options: GatewayOptions, parts: GatewayParts): GatewayAppDeps {
  const { quota, deadLetters } = parts;
  const limits = options.tenantLimits;
  return {
    client:
      quota && limits
        ? withTenantQuota(parts.client, quota, (t) => quotaLimitsOf(limits, t))
        : parts.client,
    ...(limits ? { limits: createTenantLimiter({ limits, ...(quota ? { quota } : {}) }) } : {}),
    catalog: parts.catalog,
    canceller: parts.canceller,
    retries: parts.retries,
    router: parts.router,
    failFastWithoutActors: options.edgeSite === undefined,
    apiKeys: createApiKeyStore(options.apiKeys),
    ...(deadLetters
      ? { admin: { keys: createAdminKeyStore(options.adminKeys ?? []), deadLetters } }
      : {}),
    logger: options.logger,
    isReady: () => !nc.isClosed() && !nc.isDraining(),
    options,
  };
}

/** Serves `fetch` over HTTP, or HTTPS when `options.tls` names a certificate. */
function serveHttp(
  fetch: (request: Request) => Response | Promise<Response>,
  options: GatewayOptions,
): Promise<ServerType> {
  // Slow clients hold nothing for long: headers must arrive within their timeout, the body
  // within its own (read by the routes, `json-body.ts`), and the server's request timeout
  // closes what is left of a request after both; checked every second, not Node's 30.
  const timeouts = {
    headersTimeout: options.headersTimeoutMs,
    requestTimeout: options.headersTimeoutMs + options.bodyTimeoutMs + REQUEST_TIMEOUT_SLACK_MS,
    connectionsCheckingInterval: 1_000,
  };
  const serverOptions = {
    ...timeouts,
    // TCP keep-alive on every accepted socket: a client gone without a FIN is found and its
    // socket (and stream) freed, and a long quiet stream keeps middleboxes' state alive.
    keepAlive: true,
    keepAliveInitialDelay: options.tcpKeepAliveMs,
    // HTTP/1.1 without Host is refused by the app, in the JSON shape, not by Node with a bare 400.
    requireHostHeader: false,
  };
  const handle = getRequestListener(fetch, {
    hostname: options.host,
    errorHandler: answerRequestError,
  });
  // The handler settles its own errors (into responses); Node wants a listener that returns.
  const listener = (req: IncomingMessage, res: ServerResponse): void => void handle(req, res);
  const server = options.tls
    ? createHttpsServer(
        {
          ...serverOptions,
          cert: readFileSync(options.tls.certFile),
          key: readFileSync(options.tls.keyFile),
        },
        listener,
      )
    : createHttpServer(serverOptions, listener);
  // What Node itself would refuse or drop gets the API's JSON error shape, not a bare status line.
  server.on('clientError', answerClientError);
  server.on('connect', answerConnect);
  server.on('checkExpectation', answerExpectation);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** Stops in order: the HTTP server (open requests finish), the quota, the watches, NATS. */
async function closeGateway(
  server: ServerType,
  parts: GatewayParts,
  nc: NatsConnection,
): Promise<void> {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    // Idle keep-alive sockets would hold close() open; requests in flight still finish.
    if ('closeIdleConnections' in server) server.closeIdleConnections();
  });
  await parts.quota?.close(); // after the last request: gives unused leases back
  parts.catalog.close();
  parts.health.close();
  parts.router.close();
  await parts.client.close();
  await parts.adminNc?.drain();
  await nc.drain();
}
