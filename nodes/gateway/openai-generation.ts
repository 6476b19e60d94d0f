/**
 * OpenAI's text generation routes on chat models: `POST /v1/chat/completions` and the legacy
 * `POST /v1/completions` (a prompt to continue, as one user message). Every field is honoured or
 * refused: each is checked against its documented bounds, then against what the model declares
 * it honours (`protocol/capabilities.ts`), and a field this gateway does not know is refused by
 * name. `stream: true` answers Server-Sent Events (`openai-stream.ts`).
 */
import type { Context } from 'hono';
import { z } from 'zod';
import {
  chatChoices,
  chatContentSchema,
  chatOutputSchema,
  chatParamsSchema,
  checkCapabilities,
  MAX_CHAT_CONTENT_CHARS,
  MAX_CHAT_MESSAGES,
  NO_CAPABILITIES,
  Priority,
  validate,
  ValidationError,
  type ModelDeployment,
  type OptionalField,
  type TaskRecord,
} from '../../protocol/index.js';
import type { GatewayEnv } from './gateway-env.js';
import { readJsonBody } from './json-body.js';
import {
  modelOfKind,
  modelResult,
  noteEndUser,
  runToEnd,
  seconds,
  usage,
  type OpenAiRouteDeps,
} from './openai-common.js';
import { openAiStreamResponse, resumeCursor, type ChunkFormat } from './openai-stream.js';
import { finalResponse } from './task-view.js';

// Content given as parts is held to the content limit once joined, by the submit path.
const message = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.union([
    chatContentSchema,
    z.array(z.object({ type: z.literal('text'), text: z.string() })),
  ]),
});

/**
 * The generation fields of OpenAI's chat and completion requests, each checked against its
 * documented bounds; whether the model honours it is its capability declaration's to say.
 */
const generationFields = {
  model: z.string(),
  max_tokens: chatParamsSchema.shape.max_tokens,
  temperature: chatParamsSchema.shape.temperature,
  seed: chatParamsSchema.shape.seed,
  // vLLM's extension, which the built-in chat model honours.
  min_tokens: chatParamsSchema.shape.min_tokens,
  n: z.number().int().min(1, 'at least 1').max(128, 'at most 128').nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).strict().nullish(),
  top_p: z.number().min(0, 'at least 0').max(1, 'at most 1').nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(4, 'at most 4 sequences')]).nullish(),
  presence_penalty: z.number().min(-2, 'at least -2').max(2, 'at most 2').nullish(),
  frequency_penalty: z.number().min(-2, 'at least -2').max(2, 'at most 2').nullish(),
  logit_bias: z.record(z.string(), z.number().min(-100).max(100)).nullish(),
  /** An end user's id: kept on the request's trace, for abuse tracing. */
  user: z.string().max(256, 'at most 256 characters').nullish(),
};

// Strict: a field this gateway does not know is refused by name, never ignored.
const chatBodySchema = z
  .object({
    ...generationFields,
    messages: z
      .array(message)
      .min(1, 'at least 1 message')
      .max(MAX_CHAT_MESSAGES, `at most ${MAX_CHAT_MESSAGES} messages`),
    max_completion_tokens: chatParamsSchema.shape.max_tokens,
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int().min(0, 'at least 0').max(20, 'at most 20').nullish(),
    response_format: z
      .object({ type: z.enum(['text', 'json_object', 'json_schema']) })
      .passthrough()
      .nullish(),
    tools: z.array(z.unknown()).max(128, 'at most 128 tools').nullish(),
    tool_choice: z.unknown().optional(),
    parallel_tool_calls: z.boolean().nullish(),
  })
  .strict();

type ChatBody = z.infer<typeof chatBodySchema>;

const completionBodySchema = z
  .object({
    ...generationFields,
    // One prompt; a list of one is the same. Token arrays and batches are refused by name below.
    prompt: z.union([
      z.string().max(MAX_CHAT_CONTENT_CHARS, `at most ${MAX_CHAT_CONTENT_CHARS} characters`),
      z.array(z.unknown()).min(1, 'at least 1 prompt'),
    ]),
    logprobs: z.number().int().min(0, 'at least 0').max(5, 'at most 5').nullish(),
    echo: z.boolean().nullish(),
    suffix: z.string().nullish(),
    best_of: z.number().int().min(1, 'at least 1').max(20, 'at most 20').nullish(),
  })
  .strict();

type CompletionBody = z.infer<typeof completionBodySchema>;

/** `POST /v1/chat/completions`: one chat task, answered as a `chat.completion`. */
export async function chatCompletion(
  c: Context<GatewayEnv>,
  deps: OpenAiRouteDeps,
): Promise<Response> {
  const body = validate(chatBodySchema, await readJsonBody(c, deps.body), 'body');
  const model = checkGeneration(deps, body, {
    // The defaults ask for nothing: no log probabilities, plain text, no tool call.
    logprobs: body.logprobs === true ? true : undefined,
    top_logprobs: body.top_logprobs,
    response_format: body.response_format?.type === 'text' ? undefined : body.response_format,
    tools: body.tools?.length ? body.tools : undefined,
    tool_choice: body.tool_choice === 'none' ? undefined : body.tool_choice,
    parallel_tool_calls: body.tools?.length ? body.parallel_tool_calls : undefined,
  });
  const input = { messages: chatMessages(body) };
  const params = generationParams(body, body.max_completion_tokens ?? body.max_tokens);
  if (body.stream) {
    return streamGeneration(c, deps, { model, input, params, body, format: chatChunks });
  }
  const { taskId, region, outcome } = await runToEnd(c, deps, { model, input, params }, body);
  if (outcome.state !== 'succeeded') return finalResponse(c, outcome, region);
  const output = modelResult(chatOutputSchema, outcome.result, model.name);
  return c.json({
    id: `chatcmpl-${taskId}`,
    object: 'chat.completion',
    created: seconds(outcome.finishedAt ?? Date.now()),
    model: model.name,
    system_fingerprint: `${model.name}-${outcome.version}`,
    choices: chatChoices(output).map((choice, index) => ({
      index,
      message: { role: 'assistant', content: choice.text, refusal: null },
      logprobs: null,
      finish_reason: choice.finish_reason,
    })),
    usage: usage(output.usage.prompt_tokens, output.usage.completion_tokens),
  });
}

/**
 * `POST /v1/completions`, the legacy endpoint several frameworks still call: the prompt goes to
 * a chat model as one user message, whose answer continues it; answered as a `text_completion`.
 */
export async function textCompletion(
  c: Context<GatewayEnv>,
  deps: OpenAiRouteDeps,
): Promise<Response> {
  const body = validate(completionBodySchema, await readJsonBody(c, deps.body), 'body');
  const prompt = singlePrompt(body.prompt);
  if (body.echo) throw new ValidationError('is not supported (send false)', 'echo');
  if (body.suffix) throw new ValidationError('is not supported', 'suffix');
  if ((body.best_of ?? 1) > 1) throw new ValidationError('is not supported (send 1)', 'best_of');
  const model = checkGeneration(deps, body, {
    logprobs: body.logprobs ? body.logprobs : undefined,
  });
  const input = { messages: [{ role: 'user', content: prompt }] };
  // OpenAI's default for this endpoint is 16 tokens.
  const params = generationParams(body, body.max_tokens ?? LEGACY_DEFAULT_MAX_TOKENS);
  if (body.stream) {
    return streamGeneration(c, deps, { model, input, params, body, format: textChunks });
  }
  const { taskId, region, outcome } = await runToEnd(c, deps, { model, input, params }, body);
  if (outcome.state !== 'succeeded') return finalResponse(c, outcome, region);
  const output = modelResult(chatOutputSchema, outcome.result, model.name);
  return c.json({
    id: `cmpl-${taskId}`,
    object: 'text_completion',
    created: seconds(outcome.finishedAt ?? Date.now()),
    model: model.name,
    system_fingerprint: `${model.name}-${outcome.version}`,
    choices: chatChoices(output).map((choice, index) => ({
      text: choice.text,
      index,
      logprobs: null,
      finish_reason: choice.finish_reason,
    })),
    usage: usage(output.usage.prompt_tokens, output.usage.completion_tokens),
  });
}

/** `max_tokens` of `/v1/completions` when the request sets none (OpenAI's default). */
const LEGACY_DEFAULT_MAX_TOKENS = 16;

/** The prompt of a legacy completion: a string, or a list of one string. */
function singlePrompt(prompt: CompletionBody['prompt']): string {
  if (typeof prompt === 'string') return prompt;
  if (prompt.length > 1) {
    throw new ValidationError('one prompt per request (send a string)', 'prompt');
  }
  const [only] = prompt;
  if (typeof only !== 'string') {
    throw new ValidationError('token arrays are not supported; send a string', 'prompt');
  }
  if (only.length > MAX_CHAT_CONTENT_CHARS) {
    throw new ValidationError(`at most ${MAX_CHAT_CONTENT_CHARS} characters`, 'prompt');
  }
  return only;
}

type GenerationBody = z.infer<z.ZodObject<typeof generationFields>>;

/**
 * The chat model a generation request names, once it is known to honour every field the request
 * sets (`routeFields`: the route's own optional fields, as the capability check reads them).
 */
function checkGeneration(
  deps: OpenAiRouteDeps,
  body: GenerationBody,
  routeFields: Partial<Record<OptionalField, unknown>>,
): ModelDeployment {
  if (body.stream_options && !body.stream) {
    throw new ValidationError('is only allowed with stream: true', 'stream_options');
  }
  const model = modelOfKind(deps.catalog, body.model, 'chat');
  checkCapabilities(model.name, model.capabilities ?? NO_CAPABILITIES, {
    fields: {
      temperature: body.temperature,
      seed: body.seed,
      min_tokens: body.min_tokens,
      top_p: body.top_p,
      stop: body.stop,
      presence_penalty: body.presence_penalty,
      frequency_penalty: body.frequency_penalty,
      logit_bias:
        body.logit_bias && Object.keys(body.logit_bias).length > 0 ? body.logit_bias : undefined,
      ...routeFields,
    },
    n: body.n,
    stream: body.stream,
  });
  noteEndUser(body.user);
  return model;
}

/** The chat model's params from the fields it honours. */
function generationParams(
  body: GenerationBody,
  maxTokens: number | null | undefined,
): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  if (maxTokens != null) params['max_tokens'] = maxTokens;
  if (body.temperature != null) params['temperature'] = body.temperature;
  if (body.seed != null) params['seed'] = body.seed;
  if (body.min_tokens != null) params['min_tokens'] = body.min_tokens;
  if (body.top_p != null) params['top_p'] = body.top_p;
  if (body.stop != null) params['stop'] = body.stop;
  if (body.presence_penalty != null) params['presence_penalty'] = body.presence_penalty;
  if (body.frequency_penalty != null) params['frequency_penalty'] = body.frequency_penalty;
  if (body.n != null && body.n > 1) params['n'] = body.n;
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

/** Submits a streamed generation and answers its stream. */
async function streamGeneration(
  c: Context<GatewayEnv>,
  deps: OpenAiRouteDeps,
  g: {
    model: ModelDeployment;
    input: unknown;
    params: Record<string, unknown>;
    body: GenerationBody;
    format: (taskId: string, model: ModelDeployment, choices: number) => ChunkFormat;
  },
): Promise<Response> {
  const from = resumeCursor(c);
  const choices = g.body.n ?? 1;
  if (from.choice >= choices) {
    throw new ValidationError(`names answer ${from.choice} of ${choices}`, 'Last-Event-ID');
  }
  const { taskId, region, events } = await deps.submitter.submit(c, {
    model: g.model,
    input: g.input,
    params: g.params,
    priority: Priority.Interactive,
    waitMs: 0,
    stream: true,
    events: { afterSeq: from.seq },
  });
  // Without a key the stream cannot be resumed: its task stops as soon as its reader goes.
  const keyed = c.req.header('Idempotency-Key') !== undefined;
  return openAiStreamResponse(c, {
    client: deps.client,
    canceller: deps.canceller,
    abandonGraceMs: keyed ? deps.abandonGraceMs : 0,
    task: { taskId, region, tenant: c.get('tenant'), model: g.model.name, createdAt: Date.now() },
    ...(events ? { events } : {}),
    from,
    includeUsage: g.body.stream_options?.include_usage === true,
    keepAliveMs: deps.keepAliveMs,
    format: g.format(taskId, g.model, choices),
  });
}

/** A chat model's answers and their finish reasons, from a succeeded task's record. */
function finalChoices(record: TaskRecord): { text: string; finish: string }[] | undefined {
  const output = chatOutputSchema.safeParse(record.result);
  if (!output.success) return undefined;
  return chatChoices(output.data).map((c) => ({ text: c.text, finish: c.finish_reason }));
}

/** The usage chunk's counts, from a succeeded task's record. */
function usageOf(record: TaskRecord) {
  const output = chatOutputSchema.safeParse(record.result);
  const counts = output.success ? output.data.usage : { prompt_tokens: 0, completion_tokens: 0 };
  return usage(counts.prompt_tokens, counts.completion_tokens);
}

/** `chat.completion.chunk`s of one completion. */
function chatChunks(taskId: string, model: ModelDeployment, choices: number): ChunkFormat {
  const base = {
    id: `chatcmpl-${taskId}`,
    object: 'chat.completion.chunk',
    created: seconds(Date.now()),
    model: model.name,
    system_fingerprint: `${model.name}-${model.version}`,
  };
  return {
    choices,
    chunk: ({ index, text, role, finish }) => ({
      ...base,
      choices: [
        {
          index,
          delta: finish ? {} : { ...(role ? { role: 'assistant' } : {}), content: text ?? '' },
          logprobs: null,
          finish_reason: finish ?? null,
        },
      ],
    }),
    usage: (record) => ({ ...base, choices: [], usage: usageOf(record) }),
    finalChoices,
  };
}

/** `text_completion` chunks of one legacy completion (no role: the first is empty text). */
function textChunks(taskId: string, model: ModelDeployment, choices: number): ChunkFormat {
  const base = {
    id: `cmpl-${taskId}`,
    object: 'text_completion',
    created: seconds(Date.now()),
    model: model.name,
    system_fingerprint: `${model.name}-${model.version}`,
  };
  return {
    choices,
    chunk: ({ index, text, finish }) => ({
      ...base,
      choices: [{ text: text ?? '', index, logprobs: null, finish_reason: finish ?? null }],
    }),
    usage: (record) => ({ ...base, choices: [], usage: usageOf(record) }),
    finalChoices,
  };
}
