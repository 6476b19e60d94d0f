/**
 * `hash-embed`: a deterministic text embedding built by feature hashing, so Vigil has a real
 * embedding model without downloading weights. Word unigrams and bigrams carry topic, character
 * n-grams carry spelling (so `runner` lands near `running`), and signed hashing keeps collisions
 * from piling up in one direction. The vectors are L2-normalised, which makes a dot product a cosine.
 */

import {
  embeddingDimensionsSchema,
  parseEmbeddingInput,
  parseEmbeddingParams,
  validate,
} from '../../protocol/index.js';
import { fmix32, isCount, ModelKind, throwIfAborted } from './runtime.js';
import type { EmbeddingOutput, ModelRuntime } from './runtime.js';

/** Vector length when neither the options nor the request say otherwise. */
export const DEFAULT_EMBEDDING_DIMENSIONS = 384;

/** Options for {@link createHashEmbeddingModel}. */
export interface HashEmbeddingOptions {
  /**
   * Vector length used when a request sets no `params.dimensions`, within protocol's
   * `MIN_EMBEDDING_DIMENSIONS` and `MAX_EMBEDDING_DIMENSIONS`.
   * Default {@link DEFAULT_EMBEDDING_DIMENSIONS}.
   */
  dimensions?: number;
}

// Feature families get their own hash seeds so the word `cat` and the trigram `cat` are different
// features, and their own weights so the many character n-grams of a word do not drown the word.
const WORD_SEED = 0x811c9dc5;
const BIGRAM_SEED = 0x9e3779b9;
const CHAR_SEED = 0x85ebca6b;
const WORD_WEIGHT = 1;
const BIGRAM_WEIGHT = 0.7;
const CHAR_WEIGHT = 0.25;
const CHAR_NGRAM_MIN = 3;
const CHAR_NGRAM_MAX = 5;
const FNV_PRIME = 0x01000193;
const SPACE = 0x20;
const WORD_START = '<';
const WORD_END = '>';
// A batch of long texts is real CPU work: give the event loop a turn after this many characters.
const YIELD_EVERY_CHARS = 65_536;

// Letters and digits, keeping inner apostrophes so `don't` stays one word.
const WORD_RE = /[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*/gu;

/** How far from 1 a unit vector's length may be: the components are rounded to float32. */
const UNIT_LENGTH_TOLERANCE = 1e-4;

/**
 * `hash-embed`'s output check: one vector per input, each of the stated dimensions, finite, and of
 * unit length (or all zero, for a text with no features).
 */
export function checkEmbeddingOutput(output: unknown): string | undefined {
  const o = output as Partial<EmbeddingOutput> | null;
  if (typeof o !== 'object' || o === null) return 'output is not an object';
  if (!Array.isArray(o.embeddings) || o.embeddings.length === 0) return 'no embeddings';
  if (!isCount(o.dimensions) || o.dimensions === 0) return 'dimensions is not a positive integer';
  if (!isCount(o.usage?.prompt_tokens)) return 'usage.prompt_tokens is not a non-negative integer';
  for (const [i, vector] of o.embeddings.entries()) {
    if (!Array.isArray(vector) || vector.length !== o.dimensions)
      return `embedding ${i} does not have ${o.dimensions} dimensions`;
    let squares = 0;
    for (const x of vector) {
      if (!Number.isFinite(x)) return `embedding ${i} has a non-finite component`;
      squares += x * x;
    }
    if (squares !== 0 && Math.abs(Math.sqrt(squares) - 1) > UNIT_LENGTH_TOLERANCE)
      return `embedding ${i} is not of unit length (${Math.sqrt(squares).toFixed(6)})`;
  }
  return undefined;
}

/** Creates the `hash-embed` model. Throws `ValidationError` when the options are out of range. */
export function createHashEmbeddingModel(options: HashEmbeddingOptions = {}): ModelRuntime {
  const defaultDimensions = validate(
    embeddingDimensionsSchema.optional(),
    options.dimensions,
    'embedding.dimensions',
  );
  const fallbackDimensions = defaultDimensions ?? DEFAULT_EMBEDDING_DIMENSIONS;

  return {
    name: 'hash-embed',
    version: 'v1',
    kind: ModelKind.Embedding,
    description: `Feature-hashed word and character n-gram embeddings (${fallbackDimensions} dimensions by default)`,
    checkOutput: checkEmbeddingOutput,
    async run(input, params, ctx): Promise<EmbeddingOutput> {
      // The gateway checks this same contract before it publishes; checked again here because
      // any client with NATS access can publish a task.
      const texts = parseEmbeddingInput(input);
      const { dimensions = fallbackDimensions } = parseEmbeddingParams(params);

      const embeddings: number[][] = [];
      let promptTokens = 0;
      let charsSinceYield = 0;
      for (const text of texts) {
        throwIfAborted(ctx);
        const { vector, words } = embed(text, dimensions);
        embeddings.push(vector);
        promptTokens += words;
        charsSinceYield += text.length;
        if (charsSinceYield >= YIELD_EVERY_CHARS) {
          charsSinceYield = 0;
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
      return { embeddings, dimensions, usage: { prompt_tokens: promptTokens } };
    },
  };
}

/** Embeds one text; returns the float32-rounded unit vector and the word count. */
function embed(text: string, dimensions: number): { vector: number[]; words: number } {
  const normalised = text.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').trim();
  const words = normalised.match(WORD_RE) ?? [];

  const unigrams = new Map<number, number>();
  const bigrams = new Map<number, number>();
  const chars = new Map<number, number>();
  let previous: string | undefined;
  for (const word of words) {
    count(unigrams, fmix32(feed(WORD_SEED, word)));
    if (previous !== undefined) {
      count(bigrams, fmix32(feed(feed(feedCode(BIGRAM_SEED, SPACE), previous), word)));
    }
    previous = word;
    addCharNgrams(chars, WORD_START + word + WORD_END);
  }

  const sums = new Float64Array(dimensions);
  accumulate(sums, unigrams, WORD_WEIGHT);
  accumulate(sums, bigrams, BIGRAM_WEIGHT);
  accumulate(sums, chars, CHAR_WEIGHT);

  let squares = 0;
  for (const value of sums) squares += value * value;
  // An empty or punctuation-only text has no features: answer with zeros rather than NaN.
  const scale = squares > 0 ? 1 / Math.sqrt(squares) : 0;
  // float32 rounding here means the gateway's base64 float32 encoding carries the exact values.
  const vector = Array.from(sums, (value) => Math.fround(value * scale));
  return { vector, words: words.length };
}

/** Counts every character n-gram of a marked word, hashing incrementally to avoid substrings. */
function addCharNgrams(counts: Map<number, number>, marked: string): void {
  for (let start = 0; start + CHAR_NGRAM_MIN <= marked.length; start++) {
    let hash = CHAR_SEED;
    const end = Math.min(start + CHAR_NGRAM_MAX, marked.length);
    for (let i = start; i < end; i++) {
      hash = feedCode(hash, marked.charCodeAt(i));
      if (i - start + 1 >= CHAR_NGRAM_MIN) count(counts, fmix32(hash));
    }
  }
}

/** Adds each feature's sub-linear tf weight to its hashed slot, with its hashed sign. */
function accumulate(sums: Float64Array, counts: Map<number, number>, weight: number): void {
  const dimensions = sums.length;
  for (const [hash, tf] of counts) {
    // The slot comes from the low 31 bits and the sign from the top bit, so the two are independent.
    const index = (hash & 0x7fffffff) % dimensions;
    const sign = hash >>> 31 === 1 ? -1 : 1;
    sums[index] = (sums[index] ?? 0) + sign * weight * (1 + Math.log(tf));
  }
}

function count(counts: Map<number, number>, key: number): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

/** FNV-1a over UTF-16 code units, continuing from `hash`. */
function feed(hash: number, text: string): number {
  let h = hash;
  for (let i = 0; i < text.length; i++) h = feedCode(h, text.charCodeAt(i));
  return h;
}

function feedCode(hash: number, code: number): number {
  return Math.imul(hash ^ code, FNV_PRIME) >>> 0;
}
