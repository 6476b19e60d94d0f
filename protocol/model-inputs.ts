/**
 * What a model of each kind accepts as a task's `input` and `params`: the mirror of
 * `model-outputs.ts`, defined once for both sides of the queue. The model runtimes
 * (`actors/runtimes/`) read their input with these parsers, and the gateway checks every
 * submission against its model's kind before it publishes: whatever a runtime would refuse is
 * refused before the task is accepted, naming the field and the limit, and costs the tenant no
 * queue slot and no quota (issue 10).
 */
import { z } from 'zod';
import { validate } from './envelopes.js';
import { ModelKind } from './model-outputs.js';

/** Most messages one chat request may carry. */
export const MAX_CHAT_MESSAGES = 64;
/** Longest chat message content (or string prompt), in UTF-16 code units. */
export const MAX_CHAT_CONTENT_CHARS = 32_768;
/** Largest `params.max_tokens` a chat request may ask for. */
export const MAX_CHAT_MAX_TOKENS = 1024;
/**
 * Most choices (`params.n`) one chat request may ask for: each is a whole answer, so the cap
 * bounds one request's work at this many times `max_tokens`.
 */
export const MAX_CHAT_CHOICES = 8;
/** Largest `params.temperature` a chat request may ask for. */
export const MAX_CHAT_TEMPERATURE = 2;
/** Most strings one embedding request may embed. */
export const MAX_EMBEDDING_INPUTS = 256;
/** Longest string one embedding request may embed, in UTF-16 code units. */
export const MAX_EMBEDDING_INPUT_CHARS = 32_768;
/** Smallest `params.dimensions` an embedding request (or a model's options) may ask for. */
export const MIN_EMBEDDING_DIMENSIONS = 32;
/** Largest `params.dimensions` an embedding request (or a model's options) may ask for. */
export const MAX_EMBEDDING_DIMENSIONS = 4096;

// The messages name the limit, so a refused client reads what to change without the docs.
const atMostChars = (max: number): string => `at most ${max} characters`;

/** One chat message's content, or a whole prompt sent as a string. */
export const chatContentSchema = z
  .string()
  .max(MAX_CHAT_CONTENT_CHARS, atMostChars(MAX_CHAT_CONTENT_CHARS));

/** One message of a chat conversation. */
export const chatMessageSchema = z.object({
  role: z.enum(['system', 'user', 'assistant']),
  content: chatContentSchema,
});

/** One message of a chat conversation. */
export type ChatMessage = z.infer<typeof chatMessageSchema>;

/** A chat input given as a conversation: `{messages: [...]}`. */
export const chatMessagesInputSchema = z.object({
  messages: z
    .array(chatMessageSchema)
    .min(1, 'at least 1 message')
    .max(MAX_CHAT_MESSAGES, `at most ${MAX_CHAT_MESSAGES} messages`),
});

/** Longest stop sequence, characters. */
const MAX_STOP_CHARS = 256;

/**
 * A chat model's params. Unknown keys are stripped, not rejected: clients send OpenAI fields no
 * model uses. `null` means unset, as in the OpenAI API.
 */
export const chatParamsSchema = z.object({
  max_tokens: z
    .number()
    .int()
    .min(1, 'at least 1')
    .max(MAX_CHAT_MAX_TOKENS, `at most ${MAX_CHAT_MAX_TOKENS}`)
    .nullish(),
  temperature: z
    .number()
    .min(0, 'at least 0')
    .max(MAX_CHAT_TEMPERATURE, `at most ${MAX_CHAT_TEMPERATURE}`)
    .nullish(),
  seed: z.number().int().nullish(),
  /**
   * Fewest tokens before the answer may end at a sentence end (vLLM's `min_tokens`); an answer
   * still ends at `max_tokens`.
   */
  min_tokens: z
    .number()
    .int()
    .min(0, 'at least 0')
    .max(MAX_CHAT_MAX_TOKENS, `at most ${MAX_CHAT_MAX_TOKENS}`)
    .nullish(),
  /** Nucleus sampling: only the most likely tokens whose probabilities add up to this. */
  top_p: z.number().gt(0, 'more than 0').max(1, 'at most 1').nullish(),
  /** Up to 4 sequences; the answer ends before the first that appears, which is not returned. */
  stop: z
    .union([
      z.string().min(1, 'not empty').max(MAX_STOP_CHARS, `at most ${MAX_STOP_CHARS} characters`),
      z
        .array(
          z
            .string()
            .min(1, 'not empty')
            .max(MAX_STOP_CHARS, `at most ${MAX_STOP_CHARS} characters`),
        )
        .max(4, 'at most 4 sequences'),
    ])
    .nullish(),
  /** Lowers the odds of a token already in the answer, once (OpenAI's range). */
  presence_penalty: z.number().min(-2, 'at least -2').max(2, 'at most 2').nullish(),
  /** Lowers the odds of a token already in the answer, per time it appeared. */
  frequency_penalty: z.number().min(-2, 'at least -2').max(2, 'at most 2').nullish(),
  /** How many answers to give (each its own draw; OpenAI's `n`). */
  n: z
    .number()
    .int()
    .min(1, 'at least 1')
    .max(MAX_CHAT_CHOICES, `at most ${MAX_CHAT_CHOICES}`)
    .nullish(),
});

/** A chat model's params, validated. */
export type ChatParams = z.infer<typeof chatParamsSchema>;

/** An embedding vector's length. */
export const embeddingDimensionsSchema = z
  .number()
  .int()
  .min(MIN_EMBEDDING_DIMENSIONS, `at least ${MIN_EMBEDDING_DIMENSIONS}`)
  .max(MAX_EMBEDDING_DIMENSIONS, `at most ${MAX_EMBEDDING_DIMENSIONS}`);

/** One string to embed. */
export const embeddingTextSchema = z
  .string()
  .max(MAX_EMBEDDING_INPUT_CHARS, atMostChars(MAX_EMBEDDING_INPUT_CHARS));

/** Several strings to embed in one request. */
export const embeddingBatchSchema = z
  .array(embeddingTextSchema)
  .min(1, 'at least 1 string')
  .max(MAX_EMBEDDING_INPUTS, `at most ${MAX_EMBEDDING_INPUTS} strings`);

/** An embedding model's params. Unknown keys are stripped: clients send OpenAI fields. */
export const embeddingParamsSchema = z.object({ dimensions: embeddingDimensionsSchema.optional() });

/** An embedding model's params, validated. */
export type EmbeddingParams = z.infer<typeof embeddingParamsSchema>;

/**
 * A chat input (a string prompt, which is one user message, or `{messages: [...]}`) as its
 * messages. Dispatched on the type rather than a zod union, whose error names neither the field
 * nor the limit.
 * @throws ValidationError naming the field (`input.messages`) and the limit.
 */
export function parseChatInput(input: unknown): ChatMessage[] {
  return typeof input === 'string'
    ? [{ role: 'user', content: validate(chatContentSchema, input, 'input') }]
    : validate(chatMessagesInputSchema, input, 'input').messages;
}

/**
 * A chat model's params, unknown keys stripped.
 * @throws ValidationError naming the param (`params.max_tokens`) and the limit.
 */
export function parseChatParams(params: unknown): ChatParams {
  return validate(chatParamsSchema, params, 'params');
}

/**
 * An embedding input (a string, or an array of strings) as the strings to embed.
 * @throws ValidationError naming the field (`input`, `input.3`) and the limit.
 */
export function parseEmbeddingInput(input: unknown): string[] {
  return Array.isArray(input)
    ? validate(embeddingBatchSchema, input, 'input')
    : [validate(embeddingTextSchema, input, 'input')];
}

/**
 * An embedding model's params, unknown keys stripped.
 * @throws ValidationError naming the param (`params.dimensions`) and the limit.
 */
export function parseEmbeddingParams(params: unknown): EmbeddingParams {
  return validate(embeddingParamsSchema, params, 'params');
}

// A Record, not a switch, so a new model kind without an input contract fails to compile.
const INPUT_CHECKS: Readonly<Record<ModelKind, (input: unknown, params: unknown) => void>> = {
  [ModelKind.Chat]: (input, params) => {
    parseChatInput(input);
    parseChatParams(params);
  },
  [ModelKind.Embedding]: (input, params) => {
    parseEmbeddingInput(input);
    parseEmbeddingParams(params);
  },
  // Echo returns whatever it is given: anything the wire carries (`limits.ts`) is its input.
  [ModelKind.Echo]: () => {},
};

/**
 * Checks a task's `input` and `params` against the contract of its model's `kind`, as the
 * runtime of that kind will read them; input first, then params, as the runtimes do.
 * @throws ValidationError naming the field and the limit (`input.messages: at most 64 messages`).
 */
export function checkModelInput(kind: ModelKind, input: unknown, params: unknown): void {
  INPUT_CHECKS[kind](input, params);
}
