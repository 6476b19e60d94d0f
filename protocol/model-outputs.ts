/**
 * What a model of each kind returns as a task's result: the contract between the model runtimes
 * (`actors/runtimes/`) and whoever reads the result (the gateway's OpenAI-compatible routes,
 * internal services). Results arrive from NATS, so readers validate them with these schemas.
 */
import { z } from 'zod';

/** The kinds of model Vigil knows how to expose (the OpenAI adapter maps on this). */
export const ModelKind = {
  Embedding: 'embedding',
  Chat: 'chat',
  Echo: 'echo',
} as const;

/** One of the {@link ModelKind} values. */
export type ModelKind = (typeof ModelKind)[keyof typeof ModelKind];

const count = z.number().int().nonnegative();

/** Output of an embedding model. */
export const embeddingOutputSchema = z.object({
  /** One L2-normalised vector per input string, in input order. */
  embeddings: z.array(z.array(z.number())),
  dimensions: count,
  usage: z.object({ prompt_tokens: count }),
});

/** Output of an embedding model. */
export type EmbeddingOutput = z.infer<typeof embeddingOutputSchema>;

/** One answer of a chat model. */
export const chatChoiceSchema = z.object({
  text: z.string(),
  /** `stop` when the model ended its answer, `length` when `max_tokens` cut it. */
  finish_reason: z.enum(['stop', 'length']),
});

/** One answer of a chat model. */
export type ChatChoice = z.infer<typeof chatChoiceSchema>;

/**
 * Output of a chat model: its answer, and every answer when the request asked for more than one
 * (`params.n`), the first being the answer; `usage` counts the tokens of all.
 */
export const chatOutputSchema = chatChoiceSchema.extend({
  choices: z.array(chatChoiceSchema).min(2).optional(),
  usage: z.object({ prompt_tokens: count, completion_tokens: count }),
});

/** Every answer of a chat output, in order. */
export function chatChoices(output: ChatOutput): ChatChoice[] {
  return output.choices ?? [{ text: output.text, finish_reason: output.finish_reason }];
}

/** Output of a chat model. */
export type ChatOutput = z.infer<typeof chatOutputSchema>;
