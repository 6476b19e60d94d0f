/**
 * What a model honours of the OpenAI request surface, declared by its runtime and kept in its
 * catalog entry (`GET /v1/models/{id}` shows it). The gateway checks every OpenAI request against
 * it before a task exists: a field the model cannot honour is refused with a 400 that names the
 * field and the model, never dropped in silence.
 */
import { z } from 'zod';
import { ValidationError } from './errors.js';

/**
 * The optional OpenAI request fields a model may honour. `model`, `messages`/`prompt`,
 * `max_tokens`, `stream` and `stream_options` are every generative model's; `n` is bounded by
 * {@link ModelCapabilities.maxChoices}.
 */
export const OPTIONAL_FIELDS = [
  'temperature',
  'top_p',
  'seed',
  'stop',
  'presence_penalty',
  'frequency_penalty',
  'logit_bias',
  'logprobs',
  'top_logprobs',
  'response_format',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  /** vLLM's extension: fewest tokens before the answer may end. */
  'min_tokens',
] as const;

/** One of the {@link OPTIONAL_FIELDS}. */
export type OptionalField = (typeof OPTIONAL_FIELDS)[number];

/** A model's declared capabilities. */
export const modelCapabilitiesSchema = z.object({
  /** Its tokens can be streamed as they are produced. */
  streaming: z.boolean(),
  /** The optional fields it honours; a request that sets any other is refused. */
  fields: z.array(z.enum(OPTIONAL_FIELDS)).max(OPTIONAL_FIELDS.length),
  /** Most choices (`n`) one request may ask for. */
  maxChoices: z.number().int().min(1).max(128),
});

/** A validated capability declaration. */
export type ModelCapabilities = z.infer<typeof modelCapabilitiesSchema>;

/** What a model that declares nothing honours: nothing optional, one choice, no streaming. */
export const NO_CAPABILITIES: ModelCapabilities = Object.freeze({
  streaming: false,
  fields: [],
  maxChoices: 1,
});

/**
 * Refuses what `model` cannot honour of a request: an optional field that is set (not absent,
 * not `null`), more choices than it gives, a stream it cannot produce.
 * @throws ValidationError naming the field and the model.
 */
export function checkCapabilities(
  model: string,
  capabilities: ModelCapabilities,
  request: {
    fields: Partial<Record<OptionalField, unknown>>;
    n?: number | null | undefined;
    stream?: boolean | null | undefined;
  },
): void {
  for (const field of OPTIONAL_FIELDS) {
    const value = request.fields[field];
    if (value === undefined || value === null) continue;
    if (!capabilities.fields.includes(field)) {
      throw new ValidationError(`is not supported by model '${model}'`, field);
    }
  }
  const n = request.n ?? 1;
  if (n > capabilities.maxChoices) {
    throw new ValidationError(
      `model '${model}' gives at most ${capabilities.maxChoices} choice${capabilities.maxChoices === 1 ? '' : 's'}`,
      'n',
    );
  }
  if (request.stream === true && !capabilities.streaming) {
    throw new ValidationError(`model '${model}' cannot stream its output`, 'stream');
  }
}
