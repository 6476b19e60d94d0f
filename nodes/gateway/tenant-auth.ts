/**
 * Tenant authentication: the bearer key names the tenant (`hono/bearer-auth`), which the limits
 * and the routes read from `c.get('tenant')`. Admin paths are left to the admin routes, which
 * take admin keys, never tenant keys.
 */
import type { MiddlewareHandler } from 'hono';
import { bearerAuth } from 'hono/bearer-auth';
import { createMiddleware } from 'hono/factory';
import { isAdminPath } from './admin-routes.js';
import type { ApiKeyStore } from './api-keys.js';
import type { GatewayEnv } from './gateway-env.js';
import { unauthenticated } from './http-errors.js';

/** Authenticates every request but the admin routes' with a tenant API key. */
export function tenantAuth(apiKeys: ApiKeyStore): MiddlewareHandler<GatewayEnv> {
  const auth = bearerAuth<GatewayEnv>({
    realm: 'vigil',
    verifyToken: (token, c) => {
      const tenant = apiKeys.tenantOf(token);
      if (tenant === undefined) return false;
      c.set('tenant', tenant);
      return true;
    },
    noAuthenticationHeader: {
      message: unauthenticated('an API key is required: Authorization: Bearer <key>'),
    },
    invalidAuthenticationHeader: {
      message: unauthenticated('the Authorization header must be: Bearer <key>'),
    },
    invalidToken: { message: unauthenticated('the API key is not valid') },
  });
  return createMiddleware<GatewayEnv>((c, next) =>
    isAdminPath(c.req.path) ? next() : auth(c, next),
  );
}
