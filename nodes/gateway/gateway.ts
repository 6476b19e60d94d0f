/**
 * A running gateway: NATS connection, task client, model catalog and the HTTP server around the
 * Hono app. `main.ts` builds the options from the environment; tests and benches call this.
 */
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { serve, type ServerType } from '@hono/node-server';
import { jetstream } from '@nats-io/jetstream';
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
import { observeNatsConnection, observeQueues } from '../common/metrics.js';
import { connectNats, type NatsConnectOptions } from '../common/nats-connection.js';
import { createAdminKeyStore, createApiKeyStore, type ApiKeyEntry } from './api-keys.js';
import { createGatewayApp, type GatewayAppOptions } from './app.js';
import { openModelCatalog, type ModelCatalog } from './catalog.js';
import {
  createTenantLimiter,
  hasQuotas,
  quotaLimitsOf,
  type TenantLimitsConfig,
} from './tenant-limits.js';
import { openTenantQuota, withTenantQuota, type TenantQuota } from './tenant-quota.js';
import { createRegionRouter, watchRouteOverrides, type RegionRouter } from './region-router.js';

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
  /** Serve HTTPS with this certificate and key (PEM file paths). */
  tls?: { certFile: string; keyFile: string };
  logger: Logger;
}

/** Defaults of {@link GatewayOptions}. */
export const GATEWAY_DEFAULTS = {
  host: '127.0.0.1',
  port: 8080,
  maxBodyBytes: 1024 * 1024,
  maxSyncWaitMs: 30_000,
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

/** Starts a gateway. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { logger } = options;
  const gatewayId = `gw-${newTaskId().slice(0, 10)}`;
  const nc: NatsConnection = await connectNats(
    { ...options.nats, name: options.nats.name || gatewayId },
    logger,
  );
  let catalog: ModelCatalog | undefined;
  let health: ActorHealth | undefined;
  let router: RegionRouter | undefined;
  let client: VigilClient | undefined;
  let deadLetters: DeadLetterAdmin | undefined;
  const adminKeys = options.adminKeys ?? [];
  let adminNc: NatsConnection | undefined;
  let quota: TenantQuota | undefined;
  try {
    client = await createVigilClient(nc, {
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
    catalog = await openModelCatalog(hubJs, logger);
    health = await watchActorHealth(hubJs, options.region, options.spillRegions, logger);
    router = createRegionRouter(
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
    const modelCatalog = catalog;
    observeQueues({
      jsm: await hubJs.jetstreamManager(),
      region: options.region,
      models: () => modelCatalog.list().map((model) => model.name),
    });
    observeNatsConnection(nc, 'gateway');
    if (adminKeys.length > 0) {
      if (options.adminNats) {
        adminNc = await connectNats(
          { ...options.adminNats, name: options.adminNats.name || `${gatewayId}-admin` },
          logger,
        );
      }
      deadLetters = await createDeadLetterAdmin(adminNc ?? nc, { region: options.region });
    }
    if (options.tenantLimits && hasQuotas(options.tenantLimits)) {
      quota = await openTenantQuota(hubJs, {
        ...(options.quotaMaxLease === undefined ? {} : { maxLease: options.quotaMaxLease }),
        ...(options.quotaOutageAllowance === undefined
          ? {}
          : { outageAllowance: options.quotaOutageAllowance }),
        logger,
      });
    }
  } catch (err) {
    await adminNc?.close();
    await nc.close();
    throw err;
  }
  const limits = options.tenantLimits;
  const app = createGatewayApp({
    client:
      quota && limits ? withTenantQuota(client, quota, (t) => quotaLimitsOf(limits, t)) : client,
    ...(limits ? { limits: createTenantLimiter({ limits, ...(quota ? { quota } : {}) }) } : {}),
    catalog,
    router,
    failFastWithoutActors: options.edgeSite === undefined,
    apiKeys: createApiKeyStore(options.apiKeys),
    ...(deadLetters ? { admin: { keys: createAdminKeyStore(adminKeys), deadLetters } } : {}),
    logger,
    isReady: () => !nc.isClosed() && !nc.isDraining(),
    options,
  });

  const server: ServerType = await new Promise((resolve) => {
    const s = serve(
      {
        fetch: app.fetch,
        hostname: options.host,
        port: options.port,
        ...(options.tls
          ? {
              createServer: createHttpsServer,
              serverOptions: {
                cert: readFileSync(options.tls.certFile),
                key: readFileSync(options.tls.keyFile),
              },
            }
          : {}),
      },
      () => resolve(s),
    );
  });
  const address = server.address() as AddressInfo;
  const url = `${options.tls ? 'https' : 'http'}://${options.host}:${address.port}`;
  logger.info({ url, region: options.region, gatewayId }, 'gateway listening');

  let closing: Promise<void> | undefined;
  const openClient = client;
  const openCatalog = catalog;
  const openHealth = health;
  const openRouter = router;
  const openAdminNc = adminNc;
  return {
    url,
    client: openClient,
    close(): Promise<void> {
      closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          // Idle keep-alive sockets would hold close() open; requests in flight still finish.
          if ('closeIdleConnections' in server) server.closeIdleConnections();
        });
        await quota?.close(); // after the last request: gives unused leases back
        openCatalog.close();
        openHealth.close();
        openRouter.close();
        await openClient.close();
        await openAdminNc?.drain();
        await nc.drain();
      })();
      return closing;
    },
  };
}
