/**
 * The chaos run's HTTP client, as a careful client behaves: a submission that got no answer, a
 * 429 or a 5xx is sent again with the same `Idempotency-Key` after a pause, for a bounded time;
 * at the end every accepted task is followed to a final state (long polls), submissions that never
 * got an answer are looked up under their derived id, and every final task is read once more to
 * catch a second, different result.
 */
import type { TaskLedger, TrackedTask } from './tasks.js';

type Json = Record<string, unknown>;

/** Pause between two sends of one key, ms. */
const RETRY_PAUSE_MS = 250;
/** How long one HTTP request may take, ms (above the sync wait). */
const REQUEST_TIMEOUT_MS = 20_000;
/** How long a synchronous submission waits for its result, s. */
export const SYNC_WAIT_S = 10;
/** Tasks followed at once while settling. */
const SETTLE_CONCURRENCY = 32;

const retryable = (status: number) => status === 0 || status === 429 || status >= 500;

/** One answer: status (0 = none) and JSON body. */
async function call(
  url: string,
  apiKey: string,
  init: { method: string; body?: string; headers?: Record<string, string> },
): Promise<{ status: number; body: Json | undefined }> {
  try {
    const res = await fetch(url, {
      method: init.method,
      headers: {
        Authorization: `Bearer ${apiKey}`,
        ...(init.body === undefined ? {} : { 'Content-Type': 'application/json' }),
        ...init.headers,
      },
      ...(init.body === undefined ? {} : { body: init.body }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await res.text();
    try {
      return { status: res.status, body: JSON.parse(text) as Json };
    } catch {
      return { status: 0, body: undefined }; // cut off mid-body: no answer either
    }
  } catch {
    return { status: 0, body: undefined };
  }
}

/** The task view in an answer: the body of a 200/202, or `task` beside an error. */
function viewOf(status: number, body: Json | undefined): Json | undefined {
  if (!body) return undefined;
  if (status === 200 || status === 202) return body;
  const task = body['task'];
  return task && typeof task === 'object' ? (task as Json) : undefined;
}

/** Talks to one gateway for one ledger. */
export class ChaosClient {
  constructor(
    private readonly gatewayUrl: string,
    private readonly apiKey: string,
    private readonly ledger: TaskLedger,
  ) {}

  /** Submits `task` until it is accepted, refused for good, or `giveUpAt` (ms epoch) passes. */
  async submit(task: TrackedTask, giveUpAt: number): Promise<void> {
    const prefer = task.sync ? `wait=${SYNC_WAIT_S}` : 'respond-async';
    do {
      const { status, body } = await call(
        `${this.gatewayUrl}/v1/models/${task.model}/infer`,
        this.apiKey,
        {
          method: 'POST',
          body: task.body,
          headers: { Prefer: prefer, 'Idempotency-Key': task.key },
        },
      );
      task.answers.push(status);
      const view = viewOf(status, body);
      if (view && typeof view['id'] === 'string') {
        this.ledger.accept(task, view);
        return;
      }
      if (!retryable(status)) return;
      await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
    } while (Date.now() < giveUpAt);
  }

  /** Follows every task to a final state, until `deadline` (ms epoch) at the latest. */
  async settle(deadline: number): Promise<void> {
    const { tasks } = this.ledger;
    // A submission that got no answer may still have been accepted: look it up by its derived id.
    await pool(
      tasks.filter((t) => !t.accepted),
      SETTLE_CONCURRENCY,
      (t) => this.#lookUp(t, deadline),
    );
    await pool(
      tasks.filter((t) => t.accepted && !t.final),
      SETTLE_CONCURRENCY,
      (t) => this.#follow(t, deadline),
    );
    // Every id of every task read once more: a second, different result is a duplicate.
    await pool(
      tasks.filter((t) => t.accepted),
      SETTLE_CONCURRENCY,
      async (t) => {
        for (const id of t.ids) {
          const { status, body } = await this.#get(id, 0);
          if (status === 200 && body) this.ledger.accept(t, body);
        }
      },
    );
  }

  async #lookUp(task: TrackedTask, deadline: number): Promise<void> {
    for (let i = 0; i < 20 && Date.now() < deadline; i++) {
      const { status, body } = await this.#get(task.expectedId, 0);
      if (status === 404) return; // never accepted: refused
      if (status === 200 && body) return this.ledger.accept(task, body);
      await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
    }
  }

  async #follow(task: TrackedTask, deadline: number): Promise<void> {
    const id = [...task.ids][0]!;
    let notFound = 0;
    while (!task.final && Date.now() < deadline) {
      const { status, body } = await this.#get(id, 5);
      if (status === 200 && body) {
        notFound = 0;
        this.ledger.accept(task, body);
      } else if (status === 404) {
        // Three in a row, not one: a read racing a reconnect must not count as a loss.
        if (++notFound >= 3) {
          task.missing = true;
          return;
        }
        await new Promise((r) => setTimeout(r, 500));
      } else {
        await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
      }
    }
  }

  #get(id: string, waitSeconds: number) {
    return call(`${this.gatewayUrl}/v1/tasks/${id}`, this.apiKey, {
      method: 'GET',
      headers: waitSeconds > 0 ? { Prefer: `wait=${waitSeconds}` } : {},
    });
  }
}

/** Runs `work` over `items`, at most `concurrency` at once. */
async function pool<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}
