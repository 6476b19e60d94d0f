/**
 * The runtimes folder's one door: the model contract and the built-in models that implement it.
 */

export { ModelKind } from './runtime.js';
export type {
  ChatOutput,
  EmbeddingOutput,
  ModelRunContext,
  ModelRuntime,
  OutputCheck,
} from './runtime.js';

export { builtinOutputCheck, createBuiltinModels } from './builtin.js';
export type { BuiltinModelsOptions } from './builtin.js';

export { DEFAULT_ECHO_MAX_DELAY_MS, checkEchoOutput, createEchoModel } from './echo.js';
export type { EchoFaultOptions, EchoOptions } from './echo.js';

export {
  DEFAULT_CHAT_MAX_TOKENS,
  DEFAULT_CHAT_TEMPERATURE,
  DEFAULT_CORPUS_DIR,
  MIN_CHAT_TOKENS_BEFORE_STOP,
  checkChatOutput,
  createNgramChatModel,
} from './chat-ngram.js';
export type { NgramChatOptions } from './chat-ngram.js';

export {
  DEFAULT_EMBEDDING_DIMENSIONS,
  checkEmbeddingOutput,
  createHashEmbeddingModel,
} from './embedding.js';
export type { HashEmbeddingOptions } from './embedding.js';
