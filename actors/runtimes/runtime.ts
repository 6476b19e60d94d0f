import { ErrorCode, RetryableError, ModelKind } from '../../protocol/index.js';
import type { ChatOutput, EmbeddingOutput, ModelCapabilities } from '../../protocol/index.js';

export { ModelKind };
export type { ChatOutput, EmbeddingOutput };

/**
 * The contract between an inference actor and the model code it runs. A runtime is pure compute:
 * it never touches NATS, and it reports failure by throwing a `TerminalError` (same input fails the
 * same way: bad input, unsupported parameter) or a `RetryableError` (may pass on retry).
 */

/** What the actor hands a runtime besides the input. */
export interface ModelRunContext {
  /** Aborted when the task's deadline passes or the host drains; long runs must check it. */
  readonly signal: AbortSignal;
  /**
   * Receives each generated token in order, as it is produced (generative models only), with the
   * answer it belongs to when the request asked for several (`params.n`; 0, the first, if unset).
   * Answers are produced one after another: a token of answer k comes after all of answer k - 1.
   */
  readonly onToken?: (token: string, choice?: number) => void;
  /** Receives progress reports: `fraction` from 0 to 1, and an optional short message. */
  readonly onProgress?: (fraction: number, message?: string) => void;
}

/** A loaded model that can run tasks. */
export interface ModelRuntime {
  /** Model name as clients address it (`[a-z0-9][a-z0-9_-]*`, no dots: it is a subject token). */
  readonly name: string;
  /** Version of the loaded artifact (same token rules as the name). */
  readonly version: string;
  readonly kind: ModelKind;
  /** One line for `/v1/models` and operators. */
  readonly description: string;
  /** What it honours of the OpenAI request fields (kept in its catalog entry). */
  readonly capabilities?: ModelCapabilities;
  /**
   * Runs one task. `input` and `params` come from a validated envelope but their shape is the
   * model's own business: the runtime validates them and throws `ValidationError` when wrong.
   */
  run(
    input: unknown,
    params: Readonly<Record<string, unknown>>,
    ctx: ModelRunContext,
  ): Promise<unknown>;
  /**
   * The model's declared output checks (data quality): describes the first check `output` fails,
   * or returns `undefined` when it passes. Pure and cheap: actors run it on every successful result
   * and count failures; a failed check does not fail the task.
   */
  readonly checkOutput?: OutputCheck;
}

/** A model's output checks as a function (see {@link ModelRuntime.checkOutput}). */
export type OutputCheck = (output: unknown) => string | undefined;

/** `value` is a non-negative safe integer. */
export function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/** Throws the error a runtime reports when its task was aborted (deadline passed, host draining). */
export function throwIfAborted(ctx: ModelRunContext): void {
  if (ctx.signal.aborted) throw new RetryableError('aborted', ErrorCode.DeadlineExceeded);
}

/** Murmur3's fmix32 finaliser: spreads every input bit over the low bits FNV-1a leaves weak. */
export function fmix32(hash: number): number {
  let h = hash;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
