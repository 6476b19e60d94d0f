/**
 * Operator routes under `/v1/admin`: list, inspect and replay dead letters. They authenticate with
 * admin keys (`VIGIL_ADMIN_KEYS`), never tenant keys, and exist only when admin keys are
 * configured; the app's tenant authentication skips {@link isAdminPath} paths for that reason.
 */
import type { Context, Hono } from 'hono';
import { bearerAuth } from 'hono/bearer-auth';
import { z } from 'zod';
import {
  DEFAULT_DEAD_LETTER_LIST_LIMIT,
  ErrorCode,
  MAX_DEAD_LETTER_LIST_LIMIT,
  NAME_TOKEN,
  validate,
  ValidationError,
  VigilError,
  type DeadLetterAdmin,
} from '../../protocol/index.js';
import type { AdminKeyStore } from './api-keys.js';
import type { GatewayEnv } from './gateway-env.js';
import { unauthenticated } from './http-errors.js';

/** Where the admin routes live. */
export const ADMIN_PATH_PREFIX = '/v1/admin';

/** True for paths the admin routes own (and tenant authentication leaves alone). */
export function isAdminPath(path: string): boolean {
  return path === ADMIN_PATH_PREFIX || path.startsWith(`${ADMIN_PATH_PREFIX}/`);
}

/** What the admin routes need. */
export interface AdminRoutesDeps {
  keys: AdminKeyStore;
  deadLetters: DeadLetterAdmin;
}

const SEQ = /^[1-9][0-9]{0,15}$/;
const integer = z
  .string()
  .regex(/^[0-9]{1,16}$/, 'must be a positive integer')
  .transform(Number)
  .pipe(z.number().int().positive().max(Number.MAX_SAFE_INTEGER));

const listQuerySchema = z.object({
  model: z.string().regex(NAME_TOKEN, 'must be a model name').optional(),
  limit: integer.pipe(z.number().max(MAX_DEAD_LETTER_LIST_LIMIT)).optional(),
  from: integer.optional(),
});

function seqParam(c: Context<GatewayEnv>): number {
  const raw = c.req.param('seq') ?? '';
  if (!SEQ.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw new ValidationError('must be a dead-letter sequence: a positive integer', 'seq');
  }
  return Number(raw);
}

/**
 * Mounts:
 * - `GET /v1/admin/dead-letters?model=&limit=&from=`: `{data: DeadLetterSummary[], next_from}`,
 *   oldest first from stream sequence `from`; `next_from` is where the next page starts (`null`
 *   when this page was not full).
 * - `GET /v1/admin/dead-letters/:seq`: the letter with its task envelope (404 when there is none).
 * - `POST /v1/admin/dead-letters/:seq/replay`: runs the task again under the same id; 202 with
 *   `{id, links: {self: '/v1/tasks/<id>'}}`. Undecodable letters are a 400, unknown ones a 404.
 */
export function registerAdminRoutes(app: Hono<GatewayEnv>, deps: AdminRoutesDeps): void {
  const { keys, deadLetters } = deps;
  app.use(
    `${ADMIN_PATH_PREFIX}/*`,
    bearerAuth<GatewayEnv>({
      realm: 'vigil-admin',
      verifyToken: (token) => keys.isAdminKey(token),
      noAuthenticationHeader: {
        message: unauthenticated('an admin key is required: Authorization: Bearer <admin key>'),
      },
      invalidAuthenticationHeader: {
        message: unauthenticated('the Authorization header must be: Bearer <admin key>'),
      },
      invalidToken: { message: unauthenticated('the admin key is not valid') },
    }),
  );

  app.get(`${ADMIN_PATH_PREFIX}/dead-letters`, async (c) => {
    const query = validate(listQuerySchema, c.req.query(), 'query');
    const data = await deadLetters.list({
      ...(query.model === undefined ? {} : { model: query.model }),
      ...(query.limit === undefined ? {} : { limit: query.limit }),
      ...(query.from === undefined ? {} : { fromSeq: query.from }),
    });
    const limit = query.limit ?? DEFAULT_DEAD_LETTER_LIST_LIMIT;
    const last = data.at(-1);
    return c.json({
      object: 'list',
      data,
      next_from: last && data.length >= limit ? last.seq + 1 : null,
    });
  });

  app.get(`${ADMIN_PATH_PREFIX}/dead-letters/:seq`, async (c) => {
    const seq = seqParam(c);
    const letter = await deadLetters.get(seq);
    if (!letter) {
      throw new VigilError(ErrorCode.NotFound, `dead letter ${seq} does not exist`, false);
    }
    return c.json(letter);
  });

  app.post(`${ADMIN_PATH_PREFIX}/dead-letters/:seq/replay`, async (c) => {
    const { taskId } = await deadLetters.replay(seqParam(c));
    const self = `/v1/tasks/${taskId}`;
    c.header('Location', self);
    return c.json({ id: taskId, links: { self } }, 202);
  });
}
