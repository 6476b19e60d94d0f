/**
 * OpenAI-compatible routes, so existing SDKs work unchanged: chat completions and embeddings map
 * onto ordinary Vigil tasks (durable, idempotent with `Idempotency-Key`), and `/v1/models` lists
 * the catalog. `stream: true` answers Server-Sent Events (`openai-stream.ts`). The bodies are
 * held to the same limits as the model kinds' inputs (`protocol/model-inputs.ts`), so a refusal
 * names the OpenAI field; the submit path checks the translated task against them again.
 */
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import {
  chatContentSchema,
  chatOutputSchema,
  chatParamsSchema,
  embeddingOutputSchema,
  embeddingParamsSchema,
  ErrorCode,
  MAX_CHAT_MESSAGES,
  Priority,
  validate,
  ValidationError,
  VigilError,
  type ModelDeployment,
  type VigilClient,
} from '../../protocol/index.js';
import { requireModel, type ModelCatalog } from './catalog.js';
import type { GatewayEnv } from './gateway-env.js';
import { readJsonBody, type BodyLimits } from './json-body.js';
import { openAiStreamResponse, resumeCursor, type ChunkFormat } from './openai-stream.js';
import type { SubmittedTask, TaskSubmission, TaskSubmitter } from './submit-task.js';
import type { TaskCanceller } from './task-cancel.js';
import { finalResponse } from './task-view.js';

/** What the OpenAI routes need. */
export interface OpenAiRouteDeps {
  catalog: ModelCatalog;
  submitter: TaskSubmitter;
  /** Reads a streamed task's events. */
  client: VigilClient;
  /** Cancels the task of a stream whose client went away and did not come back. */
  canceller: TaskCanceller;
  /** How often an idle stream sends a keep-alive comment, ms. */
  keepAliveMs: number;
  /** How long a stream's task waits for its client to come back, ms. */
  abandonGraceMs: number;
  /** Longest a call waits for its result, ms; OpenAI clients cannot follow a 202. */
  maxSyncWaitMs: number;
  /** How much of a request body is read, and for how long. */
  body: BodyLimits;
}

// Content given as parts is held to the content limit once joined, by the submit path.
const message = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.union([
    chatContentSchema,
    z.array(z.object({ type: z.literal('text'), text: z.string() })),
  ]),
});

const chatBodySchema = z.object({
  model: z.string(),
  messages: z
    .array(message)
    .min(1, 'at least 1 message')
    .max(MAX_CHAT_MESSAGES, `at most ${MAX_CHAT_MESSAGES} messages`),
  max_tokens: chatParamsSchema.shape.max_tokens,
  max_completion_tokens: chatParamsSchema.shape.max_tokens,
  temperature: chatParamsSchema.shape.temperature,
  seed: chatParamsSchema.shape.seed,
  // vLLM's extension, which the built-in chat model honours.
  min_tokens: chatParamsSchema.shape.min_tokens,
  n: z.literal(1).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
});

type ChatBody = z.infer<typeof chatBodySchema>;

const embeddingsBodySchema = z.object({
  model: z.string(),
  // Strings or token arrays; the strings' count and lengths are the embedding input contract's,
  // checked on submit as `input`, which is this field's name too.
  input: z.union([z.string(), z.array(z.unknown())]),
  encoding_format: z.enum(['float', 'base64']).default('float'),
  dimensions: embeddingParamsSchema.shape.dimensions,
});

/** OpenAI's token input: an array of token ids, or an array of them. */
const isTokens = (item: unknown): boolean => typeof item === 'number' || Array.isArray(item);

const seconds = (ms: number): number => Math.floor(ms / 1000);

/** A task that ended within the wait, with its final record. */
type FinishedTask = SubmittedTask & { outcome: NonNullable<SubmittedTask['outcome']> };

/** Mounts the OpenAI-compatible routes on `app`. */
export function registerOpenAiRoutes(app: Hono<GatewayEnv>, deps: OpenAiRouteDeps): void {
  app.get('/v1/models', (c) =>
    c.json({ object: 'list', data: deps.catalog.list().map(openAiModel) }),
  );
  app.get('/v1/models/:model', (c) =>
    c.json(openAiModel(requireModel(deps.catalog, c.req.param('model')))),
  );
  app.post('/v1/chat/completions', (c) => chatCompletion(c, deps));
  app.post('/v1/embeddings', (c) => embeddings(c, deps));
}

/** `POST /v1/chat/completions`: one chat task, answered as a `chat.completion`. */
async function chatCompletion(c: Context<GatewayEnv>, deps: OpenAiRouteDeps): Promise<Response> {
  const body = validate(chatBodySchema, await readJsonBody(c, deps.body), 'body');
  if (body.stream_options && !body.stream) {
    throw new ValidationError('is only allowed with stream: true', 'stream_options');
  }
  const model = modelOfKind(deps.catalog, body.model, 'chat');
  const input = { messages: chatMessages(body) };
  if (body.stream) {
    const from = resumeCursor(c);
    const { taskId, region } = await deps.submitter.submit(c, {
      model,
      input,
      params: chatParams(body),
      priority: Priority.Interactive,
      waitMs: 0,
      stream: true,
    });
    // Without a key the stream cannot be resumed: its task stops as soon as its reader goes.
    const keyed = c.req.header('Idempotency-Key') !== undefined;
    return openAiStreamResponse(c, {
      client: deps.client,
      canceller: deps.canceller,
      abandonGraceMs: keyed ? deps.abandonGraceMs : 0,
      task: { taskId, region, tenant: c.get('tenant'), model: model.name, createdAt: Date.now() },
      from,
      includeUsage: body.stream_options?.include_usage === true,
      keepAliveMs: deps.keepAliveMs,
      format: chatChunks(`chatcmpl-${taskId}`, model),
    });
  }
  const task = await runToEnd(c, deps, { model, input, params: chatParams(body) });
  const { taskId, region, outcome } = task;
  if (outcome.state !== 'succeeded') return finalResponse(c, outcome, region);
  const output = modelResult(chatOutputSchema, outcome.result, model.name);
  return c.json({
    id: `chatcmpl-${taskId}`,
    object: 'chat.completion',
    created: seconds(outcome.finishedAt ?? Date.now()),
    model: model.name,
    system_fingerprint: `${model.name}-${outcome.version}`,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: output.text, refusal: null },
        logprobs: null,
        finish_reason: output.finish_reason,
      },
    ],
    usage: usage(output.usage.prompt_tokens, output.usage.completion_tokens),
  });
}

/** `chat.completion.chunk`s of one completion. */
function chatChunks(id: string, model: ModelDeployment): ChunkFormat {
  const created = seconds(Date.now());
  const base = {
    id,
    object: 'chat.completion.chunk',
    created,
    model: model.name,
    system_fingerprint: `${model.name}-${model.version}`,
  };
  return {
    chunk: ({ text, role, finish }) => ({
      ...base,
      choices: [
        {
          index: 0,
          delta: finish ? {} : { ...(role ? { role: 'assistant' } : {}), content: text ?? '' },
          logprobs: null,
          finish_reason: finish ?? null,
        },
      ],
    }),
    usage: (record) => {
      const output = chatOutputSchema.safeParse(record.result);
      const counts = output.success
        ? output.data.usage
        : { prompt_tokens: 0, completion_tokens: 0 };
      return {
        ...base,
        choices: [],
        usage: usage(counts.prompt_tokens, counts.completion_tokens),
      };
    },
    finalText: (record) => {
      const output = chatOutputSchema.safeParse(record.result);
      return output.success
        ? { text: output.data.text, finish: output.data.finish_reason }
        : undefined;
    },
  };
}

/** The chat model's params from OpenAI's sampling fields. */
function chatParams(body: ChatBody): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  if (maxTokens != null) params['max_tokens'] = maxTokens;
  if (body.temperature != null) params['temperature'] = body.temperature;
  if (body.seed != null) params['seed'] = body.seed;
  if (body.min_tokens != null) params['min_tokens'] = body.min_tokens;
  return params;
}

/** OpenAI's messages as the chat model reads them: `developer` is `system`, parts joined. */
function chatMessages(body: ChatBody): { role: string; content: string }[] {
  return body.messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content:
      typeof m.content === 'string' ? m.content : m.content.map((part) => part.text).join(''),
  }));
}

/** `POST /v1/embeddings`: one embedding task for the input strings, answered as a `list`. */
async function embeddings(c: Context<GatewayEnv>, deps: OpenAiRouteDeps): Promise<Response> {
  const body = validate(embeddingsBodySchema, await readJsonBody(c, deps.body), 'body');
  if (Array.isArray(body.input) && isTokens(body.input[0])) {
    throw new ValidationError('token arrays are not supported; send strings', 'input');
  }
  const model = modelOfKind(deps.catalog, body.model, 'embedding');
  const params: Record<string, unknown> = {};
  if (body.dimensions !== undefined) params['dimensions'] = body.dimensions;
  const { region, outcome } = await runToEnd(c, deps, { model, input: body.input, params });
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

/** The catalog's model `name`, which must be of `kind` (a 400 otherwise). */
function modelOfKind(
  catalog: ModelCatalog,
  name: string,
  kind: ModelDeployment['kind'],
): ModelDeployment {
  const model = requireModel(catalog, name);
  if (model.kind !== kind) {
    throw new ValidationError(
      `model '${name}' is a ${model.kind} model, not a ${kind} model`,
      'model',
    );
  }
  return model;
}

/** Runs a task to its end within the sync wait; OpenAI clients cannot follow a 202. */
async function runToEnd(
  c: Context<GatewayEnv>,
  deps: OpenAiRouteDeps,
  submission: Omit<TaskSubmission, 'waitMs' | 'priority'>,
): Promise<FinishedTask> {
  const { taskId, region, duplicate, outcome } = await deps.submitter.submit(c, {
    ...submission,
    priority: Priority.Interactive,
    waitMs: deps.maxSyncWaitMs,
  });
  if (!outcome) {
    // Still running: a retry with the same Idempotency-Key picks up the same task.
    throw new VigilError(ErrorCode.DeadlineExceeded, `task ${taskId} is still running`, true, {
      retryAfterMs: 1000,
    });
  }
  return { taskId, region, duplicate, outcome };
}

/**
 * A succeeded task's result read as the output its model's kind promises. A model that breaks
 * its contract is a server fault (500 `internal`), not something to pass on half-formed.
 */
function modelResult<T>(schema: z.ZodType<T>, result: unknown, model: string): T {
  const parsed = schema.safeParse(result);
  if (!parsed.success) {
    throw new VigilError(
      ErrorCode.Internal,
      `model '${model}' returned a result that does not match its kind's output`,
      false,
    );
  }
  return parsed.data;
}

function openAiModel(model: ModelDeployment) {
  return { id: model.name, object: 'model', created: seconds(model.createdAt), owned_by: 'vigil' };
}

function usage(prompt: number, completion: number) {
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
  };
}

/** OpenAI's base64 embedding format: little-endian float32s. */
function float32Base64(vector: readonly number[]): string {
  const floats = new Float32Array(vector);
  return Buffer.from(floats.buffer, floats.byteOffset, floats.byteLength).toString('base64');
}
