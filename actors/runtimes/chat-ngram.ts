/**
 * `ngram-chat`: a word-level trigram language model with back-off, trained in memory at start-up
 * on the public-domain texts in `corpus/`. It is a real generative model that needs no weights and
 * no GPU, so the streaming, deadline and retry paths of Vigil run against true token-by-token
 * output. Output is deterministic: the same prompt and params always give the same text.
 */

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ErrorCode,
  MAX_CHAT_CHOICES,
  parseChatInput,
  parseChatParams,
  RetryableError,
  ValidationError,
  type ChatChoice,
  type ChatMessage,
  type ModelCapabilities,
} from '../../protocol/index.js';
import { fmix32, isCount, ModelKind } from './runtime.js';
import type { ChatOutput, ModelRuntime } from './runtime.js';

/** Completion length when the request sets no `params.max_tokens`. */
export const DEFAULT_CHAT_MAX_TOKENS = 64;
/** Sampling temperature when the request sets no `params.temperature`; 0 means greedy. */
export const DEFAULT_CHAT_TEMPERATURE = 0.8;
/** Fewest tokens an answer has before a sentence end may finish it, unless `min_tokens` says. */
export const MIN_CHAT_TOKENS_BEFORE_STOP = 12;
/** The training corpus folder shipped beside this module. */
export const DEFAULT_CORPUS_DIR = fileURLToPath(new URL('./corpus/', import.meta.url));

/** Options for {@link createNgramChatModel}. */
export interface NgramChatOptions {
  /** Training text to use instead of the corpus files (tests pass a tiny one). */
  corpus?: string;
  /** Folder whose `*.txt` files form the corpus. Default {@link DEFAULT_CORPUS_DIR}. */
  corpusDir?: string;
  /**
   * Paces decoding: at least this long between tokens, ms, as a served LLM decodes at tens of
   * tokens per second. Streams, cancellation and failures mid-stream then have time to happen.
   * Default 0: as fast as it computes.
   */
  tokenIntervalMs?: number;
}

// Words keep inner apostrophes (`don't`); sentence punctuation is a token of its own so the model
// learns where sentences end. Quotes, brackets and dashes carry no signal a trigram can use.
const TOKEN_RE = /[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*|[.,;:!?]/gu;
const PUNCTUATION = new Set(['.', ',', ';', ':', '!', '?']);
const SENTENCE_END = new Set(['.', '!', '?']);
const BOS = 0;
const NO_TOKEN = -1;
// Trigram contexts are packed into one number: id(a) * KEY_BASE + id(b), exact while ids < 2^21.
const KEY_BASE = 2 ** 21;
// Weight of the trigram in the interpolated distribution; the rest goes to the bigram, which
// keeps a small corpus from being recited verbatim.
const TRIGRAM_WEIGHT = 0.75;
// A long answer must not hold the event loop: yield after this many tokens.
const YIELD_EVERY_TOKENS = 16;
const TITLE_LINE = /^\s*#/;
// Old texts set clauses off with dashes; read them as the commas they stand for.
const DASH = /\s*(?:--|\u2014)\s*/g;

/**
 * `ngram-chat`'s output check: text, a known finish reason, token counts; a non-empty answer
 * counts at least one token; several answers each have text and a finish reason, the first being
 * the answer.
 */
export function checkChatOutput(output: unknown): string | undefined {
  const o = output as Partial<ChatOutput> | null;
  if (typeof o !== 'object' || o === null) return 'output is not an object';
  const answerProblem = checkChoice(o);
  if (answerProblem) return answerProblem;
  if (!isCount(o.usage?.prompt_tokens) || !isCount(o.usage.completion_tokens))
    return 'usage token counts are not non-negative integers';
  if (o.choices !== undefined) {
    if (!Array.isArray(o.choices) || o.choices.length < 2)
      return 'choices is not a list of 2 or more';
    for (const [i, choice] of o.choices.entries()) {
      const problem = checkChoice(choice);
      if (problem) return `choice ${i}: ${problem}`;
    }
    if (o.choices[0]?.text !== o.text) return 'the first choice is not the answer';
  }
  const texts = o.choices?.map((c) => c.text) ?? [o.text];
  if (texts.some((t) => t?.trim() !== '') && o.usage.completion_tokens === 0)
    return 'a non-empty answer counts no completion tokens';
  return undefined;
}

function checkChoice(c: Partial<ChatChoice> | null): string | undefined {
  if (typeof c !== 'object' || c === null) return 'answer is not an object';
  if (typeof c.text !== 'string') return 'text is not a string';
  if (c.finish_reason !== 'stop' && c.finish_reason !== 'length')
    return `finish_reason '${String(c.finish_reason)}' is neither stop nor length`;
  return undefined;
}

/**
 * What `ngram-chat` honours: streamed tokens, temperature and nucleus sampling, seeds, stop
 * sequences, OpenAI's presence and frequency penalties, vLLM's `min_tokens`, several answers.
 */
export const NGRAM_CHAT_CAPABILITIES: ModelCapabilities = {
  streaming: true,
  fields: [
    'temperature',
    'top_p',
    'seed',
    'stop',
    'presence_penalty',
    'frequency_penalty',
    'min_tokens',
  ],
  maxChoices: MAX_CHAT_CHOICES,
};

/** Successor counts of one context, in first-seen corpus order (which makes ties deterministic). */
interface Distribution {
  readonly counts: Map<number, number>;
  total: number;
}

interface NgramModel {
  /** Lowercase token text by id; id 0 is the sentence-start marker. */
  readonly tokens: string[];
  readonly ids: Map<string, number>;
  /** How each token is written mid-sentence (`I`, `Jupiter`, `the`). */
  readonly surfaces: string[];
  readonly trigrams: Map<number, Distribution>;
  readonly bigrams: Map<number, Distribution>;
  readonly unigrams: Distribution;
}

/**
 * Creates the `ngram-chat` model, training it on the corpus now (well under a second). Throws
 * `ValidationError` when the corpus has no words, and the fs error when it cannot be read.
 */
export function createNgramChatModel(options: NgramChatOptions = {}): ModelRuntime {
  const corpus = options.corpus ?? readCorpus(options.corpusDir ?? DEFAULT_CORPUS_DIR);
  const model = train(corpus);
  const vocabulary = model.tokens.length - 1;

  return {
    name: 'ngram-chat',
    version: 'v1',
    kind: ModelKind.Chat,
    description: `Word trigram language model with back-off (${vocabulary} token vocabulary)`,
    checkOutput: checkChatOutput,
    capabilities: NGRAM_CHAT_CAPABILITIES,
    async run(input, params, ctx): Promise<ChatOutput> {
      // The gateway checks this same contract before it publishes; checked again here because
      // any client with NATS access can publish a task.
      const messages: ChatMessage[] = parseChatInput(input);
      const parsed = parseChatParams(params);
      const maxTokens = parsed.max_tokens ?? DEFAULT_CHAT_MAX_TOKENS;
      const temperature = parsed.temperature ?? DEFAULT_CHAT_TEMPERATURE;
      // Without a seed the prompt picks one, so a repeated request repeats its answer.
      const seed =
        parsed.seed === undefined || parsed.seed === null
          ? hashString(JSON.stringify(messages.map((m) => [m.role, m.content])))
          : hashString(`seed:${parsed.seed}`);

      const promptTokens = messages.reduce((sum, m) => sum + countWords(m.content), 0);
      const lastUser = messages.findLast((m) => m.role === 'user');
      const context = promptContext(model, lastUser?.content ?? '');
      // Answers one after another, each its own draw: the first from the seed (so `n` does not
      // change it), the next ones from seeds derived from it.
      const choices: ChatChoice[] = [];
      let completionTokens = 0;
      for (let choice = 0; choice < (parsed.n ?? 1); choice++) {
        const answer = await generate(model, context, {
          maxTokens,
          random: mulberry32(choice === 0 ? seed : hashString(`${seed}:choice:${choice}`)),
          sampling: {
            temperature,
            topP: parsed.top_p ?? 1,
            presencePenalty: parsed.presence_penalty ?? 0,
            frequencyPenalty: parsed.frequency_penalty ?? 0,
          },
          stops: stopSequences(parsed.stop),
          minTokens: parsed.min_tokens ?? MIN_CHAT_TOKENS_BEFORE_STOP,
          tokenIntervalMs: options.tokenIntervalMs ?? 0,
          signal: ctx.signal,
          onText: ctx.onToken && ((text) => ctx.onToken?.(text, choice)),
        });
        choices.push({ text: answer.text, finish_reason: answer.finishReason });
        completionTokens += answer.completionTokens;
      }
      const [first] = choices as [ChatChoice, ...ChatChoice[]];
      return {
        ...first,
        ...(choices.length > 1 ? { choices } : {}),
        usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens },
      };
    },
  };
}

/** Reads every `*.txt` in `dir`, in name order so training does not depend on the file system. */
function readCorpus(dir: string): string {
  const files = readdirSync(dir)
    .filter((name) => name.endsWith('.txt'))
    .sort();
  return files.map((name) => readFileSync(join(dir, name), 'utf8')).join('\n\n');
}

/** Counts unigrams, bigrams and trigrams over the corpus, sentence by sentence. */
function train(corpus: string): NgramModel {
  const tokens = ['<s>'];
  const ids = new Map<string, number>();
  const surfaceCounts: Map<string, number>[] = [new Map<string, number>()];
  const trigrams = new Map<number, Distribution>();
  const bigrams = new Map<number, Distribution>();
  const unigrams: Distribution = { counts: new Map(), total: 0 };

  const idOf = (lower: string): number => {
    let id = ids.get(lower);
    if (id === undefined) {
      id = tokens.length;
      if (id >= KEY_BASE)
        throw new ValidationError('corpus vocabulary is too large', 'chat.corpus');
      tokens.push(lower);
      ids.set(lower, id);
      surfaceCounts.push(new Map());
    }
    return id;
  };

  let words = 0;
  for (const paragraph of paragraphs(corpus)) {
    let a = BOS;
    let b = BOS;
    let position = 0;
    const raw: string[] = paragraph.replace(DASH, ', ').match(TOKEN_RE) ?? [];
    // A paragraph that stops without an end mark (a list item ending in `:`) still ends its
    // sentence, or the model would learn sentences that never finish.
    const tail = raw.at(-1);
    if (tail !== undefined && !SENTENCE_END.has(tail)) {
      if (PUNCTUATION.has(tail)) raw.pop();
      raw.push('.');
    }
    for (const surface of raw) {
      const id = idOf(surface.toLowerCase());
      if (!PUNCTUATION.has(surface)) words++;
      // Sentence-initial capitals say nothing about how a word is written, so they do not vote.
      if (position > 0) bump(surfaceCounts[id] ?? new Map<string, number>(), surface);
      addCount(trigrams, a * KEY_BASE + b, id);
      addCount(bigrams, b, id);
      unigrams.counts.set(id, (unigrams.counts.get(id) ?? 0) + 1);
      unigrams.total++;
      if (SENTENCE_END.has(surface)) {
        a = BOS;
        b = BOS;
        position = 0;
      } else {
        a = b;
        b = id;
        position++;
      }
    }
  }
  if (words === 0) throw new ValidationError('corpus has no words', 'chat.corpus');

  const surfaces = tokens.map((lower, id) => {
    let best = lower;
    let bestCount = 0;
    for (const [surface, n] of surfaceCounts[id] ?? []) {
      if (n > bestCount) {
        best = surface;
        bestCount = n;
      }
    }
    return best;
  });
  return { tokens, ids, surfaces, trigrams, bigrams, unigrams };
}

/** Blank-line separated paragraphs; `#` lines are titles and are left out of training. */
function paragraphs(corpus: string): string[] {
  const out: string[] = [];
  let current: string[] = [];
  for (const line of corpus.split(/\r?\n/)) {
    if (line.trim() === '') {
      if (current.length > 0) out.push(current.join(' '));
      current = [];
    } else if (!TITLE_LINE.test(line)) {
      current.push(line);
    }
  }
  if (current.length > 0) out.push(current.join(' '));
  return out;
}

function addCount(table: Map<number, Distribution>, key: number, id: number): void {
  let dist = table.get(key);
  if (dist === undefined) {
    dist = { counts: new Map(), total: 0 };
    table.set(key, dist);
  }
  dist.counts.set(id, (dist.counts.get(id) ?? 0) + 1);
  dist.total++;
}

function bump(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

/**
 * The generation context: the last two words of the prompt the model knows, so the answer goes on
 * from what was asked; a sentence start when the prompt shares no words with the corpus.
 */
function promptContext(model: NgramModel, prompt: string): [number, number] {
  const known: number[] = [];
  for (const token of prompt.match(TOKEN_RE) ?? []) {
    if (PUNCTUATION.has(token)) continue;
    const id = model.ids.get(token.toLowerCase());
    if (id !== undefined) known.push(id);
  }
  const b = known.at(-1);
  if (b === undefined) return [BOS, BOS];
  return [known.at(-2) ?? NO_TOKEN, b];
}

/** How the next token is drawn. */
interface Sampling {
  temperature: number;
  /** Nucleus: keep the likeliest tokens whose probabilities add up to this (1: all). */
  topP: number;
  presencePenalty: number;
  frequencyPenalty: number;
}

interface GenerateOptions {
  maxTokens: number;
  sampling: Sampling;
  /** The answer ends before the first of these that appears. */
  stops: readonly string[];
  random: () => number;
  /** Fewest tokens before a sentence end may finish the answer. */
  minTokens: number;
  tokenIntervalMs: number;
  signal: AbortSignal;
  /** Receives the answer's text as it may be shown (see {@link StopAwareText}). */
  onText: ((text: string) => void) | undefined;
}

async function generate(
  model: NgramModel,
  start: [number, number],
  {
    maxTokens,
    sampling,
    stops,
    random,
    minTokens,
    tokenIntervalMs,
    signal,
    onText,
  }: GenerateOptions,
): Promise<{ text: string; finishReason: 'stop' | 'length'; completionTokens: number }> {
  let [a, b] = start;
  const out = new StopAwareText(stops, onText);
  let produced = 0;
  let sentenceStart = true;
  // Times each token appeared in the answer, for the penalties (only kept when they apply).
  const seen = new Map<number, number>();
  const penalised = sampling.presencePenalty !== 0 || sampling.frequencyPenalty !== 0;
  while (produced < maxTokens) {
    if (signal.aborted) throw new RetryableError('aborted', ErrorCode.DeadlineExceeded);
    // The answer never opens with punctuation, even when the prompt's last word is usually
    // followed by a comma.
    const id = nextToken(
      model,
      a,
      b,
      produced === 0,
      sampling,
      penalised ? seen : undefined,
      random,
    );
    if (penalised) seen.set(id, (seen.get(id) ?? 0) + 1);
    const token = model.tokens[id] ?? '';
    let piece: string;
    if (PUNCTUATION.has(token)) {
      piece = token;
    } else {
      const surface = model.surfaces[id] ?? token;
      const word = sentenceStart ? capitalise(surface) : surface;
      piece = produced === 0 ? word : ` ${word}`;
    }
    produced++;
    if (out.add(piece)) return { text: out.text, finishReason: 'stop', completionTokens: produced };

    if (SENTENCE_END.has(token)) {
      if (produced >= minTokens) {
        return { text: out.end(), finishReason: 'stop', completionTokens: produced };
      }
      a = BOS;
      b = BOS;
      sentenceStart = true;
    } else {
      a = b;
      b = id;
      sentenceStart = false;
    }
    if (tokenIntervalMs > 0) {
      await paced(tokenIntervalMs, signal);
    } else if (produced % YIELD_EVERY_TOKENS === 0) {
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  return { text: out.end(), finishReason: 'length', completionTokens: produced };
}

/** The `stop` param as a list of sequences. */
function stopSequences(stop: string | readonly string[] | null | undefined): string[] {
  if (stop === undefined || stop === null) return [];
  return typeof stop === 'string' ? [stop] : [...stop];
}

/**
 * The answer's text as it grows, ended before the first stop sequence that appears. Text is
 * streamed only once it cannot be the start of a stop sequence: a streaming reader never sees
 * text the answer then takes back.
 */
class StopAwareText {
  text = '';
  /** Characters of `text` streamed so far. */
  #streamed = 0;

  constructor(
    private readonly stops: readonly string[],
    private readonly onText: ((text: string) => void) | undefined,
  ) {}

  /** Adds a piece; true when a stop sequence appeared (the text now ends before it). */
  add(piece: string): boolean {
    this.text += piece;
    if (this.stops.length === 0) {
      this.#stream(this.text.length);
      return false;
    }
    const from = Math.max(0, this.text.length - piece.length - longest(this.stops) + 1);
    let cut = -1;
    for (const stop of this.stops) {
      const at = this.text.indexOf(stop, from);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.text = this.text.slice(0, cut);
      this.#stream(this.text.length);
      return true;
    }
    this.#stream(this.text.length - this.#heldBack());
    return false;
  }

  /** The whole text, every character streamed. */
  end(): string {
    this.#stream(this.text.length);
    return this.text;
  }

  /** Length of the longest end of the text that begins some stop sequence. */
  #heldBack(): number {
    let held = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, this.text.length); n > held; n--) {
        if (this.text.endsWith(stop.slice(0, n))) {
          held = n;
          break;
        }
      }
    }
    return held;
  }

  #stream(upTo: number): void {
    if (upTo <= this.#streamed) return;
    this.onText?.(this.text.slice(this.#streamed, upTo));
    this.#streamed = upTo;
  }
}

function longest(strings: readonly string[]): number {
  return strings.reduce((max, s) => Math.max(max, s.length), 0);
}

/** Waits `ms` between two tokens; an abort ends the wait at once (the loop then stops). */
function paced(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

/**
 * Picks the next token: trigram interpolated with bigram when the trigram context was seen,
 * bigram alone when not, then unigram. With `wordsOnly`, punctuation is not a candidate and a
 * context with only punctuation after it falls back to a sentence start.
 */
function nextToken(
  model: NgramModel,
  a: number,
  b: number,
  wordsOnly: boolean,
  sampling: Sampling,
  seen: ReadonlyMap<number, number> | undefined,
  random: () => number,
): number {
  const bigram = model.bigrams.get(b);
  const trigram = a === NO_TOKEN ? undefined : model.trigrams.get(a * KEY_BASE + b);
  const candidates: number[] = [];
  const probabilities: number[] = [];
  if (bigram !== undefined) {
    const trigramTotal = trigram?.total ?? 0;
    for (const [id, n] of bigram.counts) {
      if (wordsOnly && PUNCTUATION.has(model.tokens[id] ?? '')) continue;
      const p2 = n / bigram.total;
      const p =
        trigram === undefined
          ? p2
          : TRIGRAM_WEIGHT * ((trigram.counts.get(id) ?? 0) / trigramTotal) +
            (1 - TRIGRAM_WEIGHT) * p2;
      candidates.push(id);
      probabilities.push(p);
    }
  }
  if (candidates.length === 0) {
    if (b !== BOS) return nextToken(model, BOS, BOS, wordsOnly, sampling, seen, random);
    for (const [id, n] of model.unigrams.counts) {
      if (wordsOnly && PUNCTUATION.has(model.tokens[id] ?? '')) continue;
      candidates.push(id);
      probabilities.push(n / model.unigrams.total);
    }
  }
  if (seen) penalise(candidates, probabilities, seen, sampling);
  return sample(candidates, probabilities, sampling, random);
}

/**
 * OpenAI's penalties on the candidates' log-probabilities: a token already in the answer `c`
 * times loses `c * frequency + (c > 0 ? presence : 0)` (negative values favour it instead).
 */
function penalise(
  candidates: number[],
  probabilities: number[],
  seen: ReadonlyMap<number, number>,
  { presencePenalty, frequencyPenalty }: Sampling,
): void {
  for (let i = 0; i < candidates.length; i++) {
    const count = seen.get(candidates[i]!) ?? 0;
    if (count === 0) continue;
    probabilities[i] = probabilities[i]! * Math.exp(-(count * frequencyPenalty + presencePenalty));
  }
}

/**
 * Samples with temperature and nucleus (`topP`); temperature 0 is greedy, ties going to the first
 * candidate in corpus order.
 */
function sample(
  candidates: number[],
  probabilities: number[],
  { temperature, topP }: Sampling,
  random: () => number,
): number {
  let best = 0;
  for (let i = 1; i < probabilities.length; i++) {
    if ((probabilities[i] ?? 0) > (probabilities[best] ?? 0)) best = i;
  }
  if (temperature === 0) return candidates[best] ?? BOS;
  // Scale in log space relative to the best candidate so a low temperature cannot underflow.
  const logMax = Math.log(probabilities[best] ?? 1);
  const weights = probabilities.map((p) => Math.exp((Math.log(p) - logMax) / temperature));
  if (topP < 1) keepNucleus(weights, topP);
  const total = weights.reduce((sum, w) => sum + w, 0);
  let target = random() * total;
  for (let i = 0; i < weights.length; i++) {
    target -= weights[i] ?? 0;
    if (target < 0) return candidates[i] ?? BOS;
  }
  return candidates[candidates.length - 1] ?? BOS;
}

/** Zeroes every weight outside the smallest set of likeliest ones that holds `topP` of the total. */
function keepNucleus(weights: number[], topP: number): void {
  const total = weights.reduce((sum, w) => sum + w, 0);
  const order = weights.map((_, i) => i).sort((x, y) => weights[y]! - weights[x]! || x - y);
  let kept = 0;
  for (const i of order) {
    if (kept >= topP * total) weights[i] = 0;
    else kept += weights[i]!;
  }
}

function capitalise(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}

function countWords(text: string): number {
  let words = 0;
  for (const token of text.match(TOKEN_RE) ?? []) if (!PUNCTUATION.has(token)) words++;
  return words;
}

/** mulberry32: a tiny, well-mixed 32-bit PRNG; reproducible from its seed on every platform. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** FNV-1a over UTF-16 code units with murmur3's finaliser, as a 32-bit seed. */
function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return fmix32(h);
}
