/**
 * `stream: true` on the OpenAI routes: a task's token events as `chat.completion.chunk` (or
 * `text_completion`) Server-Sent Events, the role first, the finish reason and usage last, then
 * `data: [DONE]`, as the official clients read them.
 *
 * What a client is shown must never repeat a token or mix two attempts' text, yet an actor can
 * die mid-stream and its task run again. The stream remembers what it has shown as a length and
 * a hash (constant memory), and a retried attempt's text is checked against it: an attempt that
 * writes the same text again (a seeded or deterministic model) continues the stream where it
 * was; one that writes other text ends the stream with an error, and the client can read the
 * task's whole answer by id. At the end the final record is the truth: what the events did not
 * carry (tokens published too late, a lost event) is sent from it, if what was shown is its
 * beginning.
 *
 * A request for several answers (`n`) gets them one after another, as the model writes them
 * (each chunk names its answer's `index`): the text shown is then the answers in order, a
 * separator between two, and the memory also keeps which answer is being shown.
 *
 * Every chunk's SSE id carries that memory with the event stream's sequence
 * (`<seq>.<attempt>.<length>.<hash>`, then `.<choice>` past the first answer): a client that lost
 * its connection sends the same request with the same `Idempotency-Key` and `Last-Event-ID` to
 * any gateway, and the stream goes on after that chunk, with the same checks.
 */
import type { Context } from 'hono';
import {
  ErrorCode,
  TaskEventType,
  TaskState,
  ValidationError,
  type TaskEventFeed,
  type TaskRecord,
  type VigilClient,
  type WireError,
} from '../../protocol/index.js';
import { eventStreamResponse, type EventSink } from './event-stream.js';
import type { GatewayEnv } from './gateway-env.js';
import type { CancelTarget, TaskCanceller } from './task-cancel.js';
import { closeFeed, followTask } from './task-follow.js';

/** What a client has been shown of a stream: where in the events, and which text. */
export interface StreamCursor {
  /** The last event stream sequence shown (0: none). */
  seq: number;
  /** The attempt whose text is shown (0: none yet). */
  attempt: number;
  /** The answer being shown (`n`; 0: the first). */
  choice: number;
  /** Length of the text shown of that answer, UTF-16 code units. */
  length: number;
  /** FNV-1a hash of all the text shown, answers joined by {@link CHOICE_SEPARATOR}. */
  hash: number;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
/** What the hash reads between two answers (ASCII's record separator). */
const CHOICE_SEPARATOR = '\u001e';

/** A stream that has shown nothing. */
export const START: StreamCursor = Object.freeze({
  seq: 0,
  attempt: 0,
  choice: 0,
  length: 0,
  hash: FNV_OFFSET,
});

/** `hash` extended by `text`. */
function extend(hash: number, text: string): number {
  let h = hash;
  for (let i = 0; i < text.length; i += 1) h = Math.imul(h ^ text.charCodeAt(i), FNV_PRIME) >>> 0;
  return h;
}

/** `hash` and `length` moved from answer `from` to the start of answer `to`. */
function nextChoices(at: { hash: number; length: number }, from: number, to: number) {
  let { hash, length } = at;
  for (let choice = from; choice < to; choice += 1) {
    hash = extend(hash, CHOICE_SEPARATOR);
    length = 0;
  }
  return { hash, length };
}

const CURSOR = /^([0-9]{1,15})\.([0-9]{1,6})\.([0-9]{1,9})\.([0-9a-z]{1,7})(?:\.([0-9]{1,3}))?$/;

/** The cursor a `Last-Event-ID` names; a typed 400 when it is not one this gateway wrote. */
export function parseCursor(header: string): StreamCursor {
  const m = CURSOR.exec(header);
  const hash = m ? parseInt(m[4]!, 36) : NaN;
  if (!m || !(hash <= 0xffffffff)) {
    throw new ValidationError(
      'must be the id of a chunk of this stream (<seq>.<attempt>.<length>.<hash>[.<choice>])',
      'Last-Event-ID',
    );
  }
  return {
    seq: Number(m[1]),
    attempt: Number(m[2]),
    length: Number(m[3]),
    hash,
    choice: Number(m[5] ?? 0),
  };
}

function formatCursor(c: StreamCursor): string {
  const choice = c.choice > 0 ? `.${c.choice}` : '';
  return `${c.seq}.${c.attempt}.${c.length}.${c.hash.toString(36)}${choice}`;
}

/** How one OpenAI route renders a stream's pieces. */
export interface ChunkFormat {
  /** How many answers the request asked for (`n`). */
  choices: number;
  /** A chunk of answer `index` carrying `text` (and, first, the role); `finish` on its last. */
  chunk(piece: { index: number; text?: string; role?: boolean; finish?: string }): unknown;
  /** The usage chunk (`stream_options.include_usage`), from the final record. */
  usage(record: TaskRecord): unknown;
  /** What the answers must be, from a succeeded task's record (`undefined`: unreadable). */
  finalChoices(record: TaskRecord): { text: string; finish: string }[] | undefined;
}

/** The stream to answer. */
export interface OpenAiStreamOptions {
  client: VigilClient;
  /** Stops the task of a stream whose reader went away and did not come back in time. */
  canceller: TaskCanceller;
  /** How long the task waits for its reader to come back, ms (0: stopped at once). */
  abandonGraceMs: number;
  task: CancelTarget;
  /** The task's event feed, when the submission opened it. */
  events?: Promise<TaskEventFeed>;
  /** Where a resumed stream starts; {@link START} for a new one. */
  from: StreamCursor;
  includeUsage: boolean;
  keepAliveMs: number;
  format: ChunkFormat;
}

/** Answers `c` with the task's OpenAI stream. */
export function openAiStreamResponse(c: Context<GatewayEnv>, o: OpenAiStreamOptions): Response {
  return eventStreamResponse(c, o.keepAliveMs, (sink) => produce(sink, o));
}

/** An attempt other than the one shown, checked against the shown text as it comes. */
interface Replay {
  attempt: number;
  choice: number;
  length: number;
  hash: number;
}

async function produce(sink: EventSink, o: OpenAiStreamOptions): Promise<void> {
  const { task } = o;
  const stream = new ChunkWriter(sink, o.format, o.from, task.taskId);
  try {
    if (o.from.seq === 0) await stream.start();
    // The reader is back: a cancel its going away left pending is withdrawn.
    else await o.canceller.resumed(task.taskId, task.region);
  } catch (err) {
    closeFeed(o.events);
    throw err;
  }
  const items = followTask(o.client, {
    taskId: task.taskId,
    region: task.region,
    tenant: task.tenant,
    afterSeq: o.from.seq,
    signal: sink.signal,
    ...(o.events ? { feed: o.events } : {}),
  });
  let ended = false;
  try {
    for await (const item of items) {
      if (item.type === 'end') {
        await stream.end(item.record, item.seq, o.includeUsage);
        ended = true;
        return;
      }
      const { event, seq } = item;
      if (event.type !== TaskEventType.Token || event.text === undefined) continue;
      if (!(await stream.token(event.attempt, event.choice ?? 0, event.text, seq))) {
        ended = true;
        return;
      }
    }
  } finally {
    if (!ended && sink.signal.aborted) {
      // The client went away mid-stream: its task stops unless it comes back within the grace.
      await o.canceller.abandon(task, o.abandonGraceMs).catch(() => undefined);
    }
  }
}

/** Writes one stream's chunks, remembering what it has shown (see the file's comment). */
class ChunkWriter {
  #shown: StreamCursor;
  #replay: Replay | undefined;

  constructor(
    private readonly sink: EventSink,
    private readonly format: ChunkFormat,
    from: StreamCursor,
    private readonly taskId: string,
  ) {
    this.#shown = { ...from };
  }

  /** The first chunks: each answer's role. */
  async start(): Promise<void> {
    for (let index = 0; index < this.format.choices; index += 1) {
      await this.#send(this.format.chunk({ index, role: true, text: '' }));
    }
  }

  /**
   * Shows an event's text of answer `choice`; false when the stream had to end (another
   * attempt's other text).
   */
  async token(attempt: number, choice: number, text: string, seq: number): Promise<boolean> {
    const shown = this.#shown;
    if (shown.attempt === 0 || attempt === shown.attempt) {
      if (choice >= this.format.choices) {
        await sendError(this.sink, otherRequestError(this.taskId, this.format.choices));
        return false;
      }
      // Answers come one after another: an earlier answer's text now breaks the contract.
      if (choice < shown.choice) {
        await sendError(this.sink, outOfOrderError(this.taskId, choice));
        return false;
      }
      await this.#show(choice, text, attempt, seq);
      return true;
    }
    // Another attempt's text: shown only past what it repeats of the text already shown.
    if (this.#replay?.attempt !== attempt) {
      this.#replay = { attempt, choice: 0, length: 0, hash: FNV_OFFSET };
    }
    const replay = this.#replay;
    if (choice < replay.choice) return this.#diverged();
    Object.assign(replay, nextChoices(replay, replay.choice, choice), { choice });
    // Past the answer being shown before it repeated all of it: other text.
    if (replay.choice > shown.choice) return this.#diverged();
    const repeats =
      replay.choice < shown.choice
        ? text.length
        : Math.min(text.length, shown.length - replay.length);
    replay.hash = extend(replay.hash, text.slice(0, repeats));
    replay.length += repeats;
    if (replay.choice < shown.choice || replay.length < shown.length) return true;
    if (replay.hash !== shown.hash) return this.#diverged();
    this.#replay = undefined;
    await this.#show(choice, text.slice(repeats), attempt, seq);
    return true;
  }

  /** The end: the rest of the text from the record, the finish, the usage, `[DONE]`; or the error. */
  async end(record: TaskRecord, seq: number | undefined, includeUsage: boolean): Promise<void> {
    if (record.state !== TaskState.Succeeded) {
      const failed = { code: ErrorCode.Internal, message: 'task failed', retryable: false };
      await sendError(this.sink, record.error ?? failed);
      return;
    }
    const final = this.format.finalChoices(record);
    if (final && final.length !== this.format.choices) {
      await sendError(this.sink, otherRequestError(this.taskId, this.format.choices));
      return;
    }
    if (!final || this.#shown.choice >= final.length) {
      await sendError(this.sink, {
        code: ErrorCode.Internal,
        message: `model '${record.model}' returned a result that does not match its kind's output`,
        retryable: false,
      });
      return;
    }
    // The record is the truth: what was shown must be its beginning; the rest comes from it.
    const shown = this.#shown;
    let before = FNV_OFFSET;
    for (const earlier of final.slice(0, shown.choice)) {
      before = extend(extend(before, earlier.text), CHOICE_SEPARATOR);
    }
    const head = final[shown.choice]!.text.slice(0, shown.length);
    if (head.length !== shown.length || extend(before, head) !== shown.hash) {
      await sendError(this.sink, divergedError(this.taskId));
      return;
    }
    const at = seq ?? shown.seq;
    await this.#show(
      shown.choice,
      final[shown.choice]!.text.slice(shown.length),
      record.attempt,
      at,
    );
    for (let index = shown.choice + 1; index < final.length; index += 1) {
      await this.#show(index, final[index]!.text, record.attempt, at);
    }
    for (const [index, answer] of final.entries()) {
      await this.#send(this.format.chunk({ index, finish: answer.finish }));
    }
    if (includeUsage) await this.#send(this.format.usage(record));
    await this.sink.send({ data: '[DONE]' });
  }

  /** Shows `text` as the next delta of answer `choice`, attempt `attempt`, at sequence `seq`. */
  async #show(choice: number, text: string, attempt: number, seq: number): Promise<void> {
    const shown = this.#shown;
    const at = nextChoices(shown, shown.choice, choice);
    this.#shown = {
      seq,
      attempt,
      choice: Math.max(choice, shown.choice),
      length: at.length + text.length,
      hash: extend(at.hash, text),
    };
    if (text.length > 0) await this.#send(this.format.chunk({ index: choice, text }));
  }

  /** Ends the stream: its text would mix two answers. */
  async #diverged(): Promise<false> {
    await sendError(this.sink, divergedError(this.taskId));
    return false;
  }

  async #send(payload: unknown): Promise<void> {
    await this.sink.send({ id: formatCursor(this.#shown), data: JSON.stringify(payload) });
  }
}

/** The error chunk OpenAI clients raise (`APIError`), then the stream ends. */
async function sendError(sink: EventSink, error: WireError): Promise<void> {
  await sink.send({ data: JSON.stringify({ error: { ...error, type: error.code } }) });
}

/**
 * The stream's key names a task that asked for another number of answers: the key was used for
 * another request (the task it names is the truth, and stays readable by id).
 */
function otherRequestError(taskId: string, asked: number): WireError {
  return {
    code: ErrorCode.Conflict,
    message:
      `this request asks for ${asked} answer${asked === 1 ? '' : 's'}, but its Idempotency-Key ` +
      `names task ${taskId}, made by another request; GET /v1/tasks/${taskId} has its answers`,
    retryable: false,
  };
}

function outOfOrderError(taskId: string, choice: number): WireError {
  return {
    code: ErrorCode.ModelFailed,
    message:
      `the model wrote answer ${choice} of task ${taskId} out of order; ` +
      `GET /v1/tasks/${taskId} has the answers`,
    retryable: false,
  };
}

function divergedError(taskId: string): WireError {
  return {
    code: ErrorCode.ModelFailed,
    message:
      `the model's output changed when task ${taskId} was retried after a failure, so the ` +
      `stream cannot go on without mixing two answers; GET /v1/tasks/${taskId} has the answer`,
    retryable: false,
  };
}

/** A `Last-Event-ID` resumes only the stream of a keyed request. */
export function resumeCursor(c: Context<GatewayEnv>): StreamCursor {
  const header = c.req.header('Last-Event-ID');
  if (header === undefined || header === '') return START;
  if (c.req.header('Idempotency-Key') === undefined) {
    throw new ValidationError(
      'resumes a stream only with the Idempotency-Key of the request that started it',
      'Last-Event-ID',
    );
  }
  return parseCursor(header);
}
