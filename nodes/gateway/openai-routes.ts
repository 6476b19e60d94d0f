/**
 * OpenAI-compatible routes, so existing SDKs work unchanged: chat and legacy completions
 * (`openai-generation.ts`) and embeddings map onto ordinary Vigil tasks (durable, idempotent with
 * `Idempotency-Key`), and `/v1/models` lists the catalog with each model's capabilities. The
 * bodies are held to the same limits as the model kinds' inputs (`protocol/model-inputs.ts`), so
 * a refusal names the OpenAI field; the submit path checks the translated task against them
 * again.
 */
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import {
  embeddingOutputSchema,
  embeddingParamsSchema,
  validate,
  ValidationError,
  type ModelDeployment,
} from '../../protocol/index.js';
import { requireModel } from './catalog.js';
import type { GatewayEnv } from './gateway-env.js';
import { readJsonBody } from './json-body.js';
import {
  modelOfKind,
  modelResult,
  noteEndUser,
  runToEnd,
  seconds,
  type OpenAiRouteDeps,
} from './openai-common.js';
import { chatCompletion, textCompletion } from './openai-generation.js';
import { finalResponse } from './task-view.js';

export type { OpenAiRouteDeps } from './openai-common.js';

// Strict, like the generation routes: an unknown field is refused by name.
const embeddingsBodySchema = z
  .object({
    model: z.string(),
    // Strings or token arrays; the strings' count and lengths are the embedding input contract's,
    // checked on submit as `input`, which is this field's name too.
    input: z.union([z.string(), z.array(z.unknown())]),
    encoding_format: z.enum(['float', 'base64']).default('float'),
    dimensions: embeddingParamsSchema.shape.dimensions,
    /** An end user's id: kept on the request's trace, for abuse tracing. */
    user: z.string().max(256, 'at most 256 characters').nullish(),
  })
  .strict();

/** OpenAI's token input: an array of token ids, or an array of them. */
const isTokens = (item: unknown): boolean => typeof item === 'number' || Array.isArray(item);

/** Mounts the OpenAI-compatible routes on `app`. */
export function registerOpenAiRoutes(app: Hono<GatewayEnv>, deps: OpenAiRouteDeps): void {
  app.get('/v1/models', (c) =>
    c.json({ object: 'list', data: deps.catalog.list().map(openAiModel) }),
  );
  app.get('/v1/models/:model', (c) =>
    c.json(openAiModel(requireModel(deps.catalog, c.req.param('model')))),
  );
  app.post('/v1/chat/completions', (c) => chatCompletion(c, deps));
  app.post('/v1/completions', (c) => textCompletion(c, deps));
  app.post('/v1/embeddings', (c) => embeddings(c, deps));
}

/** `POST /v1/embeddings`: one embedding task for the input strings, answered as a `list`. */
async function embeddings(c: Context<GatewayEnv>, deps: OpenAiRouteDeps): Promise<Response> {
  const body = validate(embeddingsBodySchema, await readJsonBody(c, deps.body), 'body');
  if (Array.isArray(body.input) && isTokens(body.input[0])) {
    throw new ValidationError('token arrays are not supported; send strings', 'input');
  }
  const model = modelOfKind(deps.catalog, body.model, 'embedding');
  noteEndUser(body.user);
  const params: Record<string, unknown> = {};
  if (body.dimensions !== undefined) params['dimensions'] = body.dimensions;
  const { region, outcome } = await runToEnd(c, deps, { model, input: body.input, params }, body);
  if (outcome.state !== 'succeeded') return finalResponse(c, outcome, region);
  const output = modelResult(embeddingOutputSchema, outcome.result, model.name);
  return c.json({
    object: 'list',
    model: model.name,
    data: output.embeddings.map((vector, index) => ({
      object: 'embedding',
      index,
      embedding: body.encoding_format === 'base64' ? float32Base64(vector) : vector,
    })),
    usage: {
      prompt_tokens: output.usage.prompt_tokens,
      total_tokens: output.usage.prompt_tokens,
    },
  });
}

/** A catalog entry as OpenAI lists models, with what it honours (Vigil's addition). */
function openAiModel(model: ModelDeployment) {
  return {
    id: model.name,
    object: 'model',
    created: seconds(model.createdAt),
    owned_by: 'vigil',
    ...(model.capabilities ? { capabilities: model.capabilities } : {}),
  };
}

/** OpenAI's base64 embedding format: little-endian float32s. */
function float32Base64(vector: readonly number[]): string {
  const floats = new Float32Array(vector);
  return Buffer.from(floats.buffer, floats.byteOffset, floats.byteLength).toString('base64');
}
