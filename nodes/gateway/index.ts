/**
 * The gateway: Hono over HTTP(S) in front of NATS JetStream. A request's path through it, in
 * reading order: `app.ts` (middleware and routes), `infer-route.ts` (or `openai-routes.ts`),
 * `submit-task.ts` (idempotency key, routing, fail-fast, deadline, spill-over), then
 * `protocol/client.ts`; the answer comes back through `task-view.ts`.
 */
export { startGateway, GATEWAY_DEFAULTS } from './gateway.js';
export type { Gateway, GatewayOptions } from './gateway.js';
export { GATEWAY_CONFIG, gatewayOptionsFromEnv } from './config.js';
export { createGatewayApp } from './app.js';
export type { GatewayAppDeps, GatewayAppOptions } from './app.js';
export type { GatewayEnv } from './gateway-env.js';
export { onGatewayError } from './http-errors.js';
export {
  createRegionRouter,
  REGION_ROUTING_DEFAULTS,
  watchRouteOverrides,
} from './region-router.js';
export type {
  RegionRouter,
  RegionRoutingOptions,
  RouteOverrides,
  RoutePlan,
} from './region-router.js';
export {
  createTenantLimiter,
  createTokenBucket,
  hasQuotas,
  limitsOf,
  parseTenantLimits,
  parseTenantLimitsMap,
  quotaLimitsOf,
  rateItem,
  rateLimitHeaderValues,
  tenantLimitsFromEnv,
} from './tenant-limits.js';
export type {
  RateLimitItem,
  TenantLimits,
  TenantLimitsConfig,
  TenantLimiterOptions,
  TokenBucket,
} from './tenant-limits.js';
export {
  LEASE_SHARE_DIVISOR,
  leaseSize,
  openTenantQuota,
  parseCounter,
  QuotaPeriod,
  quotaKey,
  quotaWindow,
  TENANT_QUOTA_DEFAULTS,
  withTenantQuota,
} from './tenant-quota.js';
export type { QuotaLimits, QuotaWindow, TenantQuota, TenantQuotaOptions } from './tenant-quota.js';
