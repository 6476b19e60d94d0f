/**
 * The models every Vigil node can serve without downloading anything: `echo`, `ngram-chat` and
 * `hash-embed`. A node registers these unless its configuration says otherwise.
 */

import { createNgramChatModel } from './chat-ngram.js';
import type { NgramChatOptions } from './chat-ngram.js';
import { createEchoModel } from './echo.js';
import type { EchoOptions } from './echo.js';
import { createHashEmbeddingModel } from './embedding.js';
import type { HashEmbeddingOptions } from './embedding.js';
import type { ModelRuntime } from './runtime.js';

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
