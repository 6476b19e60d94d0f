/**
 * The models every Vigil node can serve without downloading anything: `echo`, `ngram-chat` and
 * `hash-embed`. A node registers these unless its configuration says otherwise.
 */

import { checkChatOutput, createNgramChatModel } from './chat-ngram.js';
import type { NgramChatOptions } from './chat-ngram.js';
import { checkEchoOutput, createEchoModel } from './echo.js';
import type { EchoOptions } from './echo.js';
import { checkEmbeddingOutput, createHashEmbeddingModel } from './embedding.js';
import type { HashEmbeddingOptions } from './embedding.js';
import type { ModelRuntime, OutputCheck } from './runtime.js';

/** Options for {@link createBuiltinModels}, one entry per model. */
export interface BuiltinModelsOptions {
  echo?: EchoOptions;
  chat?: NgramChatOptions;
  embedding?: HashEmbeddingOptions;
}

/**
 * Creates the three built-in models: echo, chat, embedding, in that order. The chat model trains
 * on its corpus here, so call this once at start-up, not per task.
 */
export function createBuiltinModels(options: BuiltinModelsOptions = {}): ModelRuntime[] {
  return [
    createEchoModel(options.echo),
    createNgramChatModel(options.chat),
    createHashEmbeddingModel(options.embedding),
  ];
}

/** The built-in models' output checks, by model name (the same functions as their `checkOutput`). */
const BUILTIN_OUTPUT_CHECKS: ReadonlyMap<string, OutputCheck> = new Map([
  ['echo', checkEchoOutput],
  ['ngram-chat', checkChatOutput],
  ['hash-embed', checkEmbeddingOutput],
]);

/**
 * A built-in model's output check, for code that holds the model's name but not its runtime (an
 * actor whose model runs in a worker thread or child process); `undefined` for other models.
 */
export function builtinOutputCheck(model: string): OutputCheck | undefined {
  return BUILTIN_OUTPUT_CHECKS.get(model);
}
