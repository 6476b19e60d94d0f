/**
 * The drill's steady, bounded load, as a careful client sends it: asynchronous submissions, each
 * with its own Idempotency-Key, sent again with the same key after no answer or a 429/5xx (to the
 * next gateway in turn, as a client behind a health-checked load balancer would), and synchronous
 * probes to every gateway at a fixed pace. Every answer is timestamped; `settle` then follows every
 * accepted task to a final state, within a bounded time, and reads it twice.
 */
import { FINAL_STATES } from '../../protocol/index.js';

/** Is `state` one that never changes again? */
const isFinal = (state: unknown): boolean => (FINAL_STATES as ReadonlySet<unknown>).has(state);
/** Most submissions waiting for an answer at once; past it a tick's submission is skipped. */
const MAX_IN_FLIGHT = 64;
/** Pause between two sends of one key. */
const RETRY_PAUSE_MS = 250;
/** How long one HTTP request may take before it counts as no answer. */
const REQUEST_TIMEOUT_MS = 5_000;
/** How long a probe waits for its result (`Prefer: wait=2`). */
const PROBE_WAIT_S = 2;
/** Pace of the sync probes, per gateway. */
const PROBE_INTERVAL_MS = 250;

/** Options of {@link runLoad}. */
export interface LoadOptions {
  /** Gateway base URLs, in the order a client tries them. */
  gateways: readonly { region: string; url: string }[];
  apiKey: string;
  /** Async submissions per second, all gateways together. */
  rate: number;
  durationMs: number;
  /** A key not accepted this long after the load ends is given up on (never accepted). */
  retryWindowMs: number;
  /** Label of the keys, so two drills never share one. */
  runId: string;
  /**
   * Past `durationMs`, the load goes on while this says so (service has not recovered yet), for
   * at most `maxExtraMs`, so a recovery slower than the planned load is still measured.
   */
  keepGoing?: (samples: readonly Sample[]) => boolean;
  maxExtraMs?: number;
}

/** One answered request. */
export interface Sample {
  kind: 'submit' | 'probe';
  region: string;
  sentAt: number;
  at: number;
  /** HTTP status, or 0 for no answer. */
  status: number;
  /** A probe answered with its result, or a submission accepted. */
  ok: boolean;
}

/** One key that was accepted. */
export interface AcceptedTask {
  key: string;
  id: string;
  /** Every distinct task id answered for this key (more than one is a duplicate). */
  ids: Set<string>;
  acceptedAt: number;
  /** Known final state, when the answer already carried it. */
  state?: string;
}

/** What the load saw. */
export interface LoadResult {
  samples: Sample[];
  accepted: Map<string, AcceptedTask>;
  /** Keys never accepted within the retry window (refused, not lost). */
  neverAccepted: number;
  /** Submissions skipped because too many were waiting (the client's own bound). */
  skipped: number;
  sent: number;
  /** When the load stopped sending (ms epoch; later than planned when it was extended). */
  loadEnd: number;
}

type Json = Record<string, unknown>;

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
        'Content-Type': 'application/json',
        ...init.headers,
      },
      ...(init.body === undefined ? {} : { body: init.body }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS + PROBE_WAIT_S * 1000),
    });
    const text = await res.text();
    let body: Json | undefined;
    try {
      body = JSON.parse(text) as Json;
    } catch {
      body = undefined;
    }
    return { status: res.status, body };
  } catch {
    return { status: 0, body: undefined };
  }
}

const retryable = (status: number) => status === 0 || status === 429 || status >= 500;

/**
 * Runs the load for `durationMs`, calling `atMs` hooks at their offsets (the fault, its repair),
 * and resolves once every key is accepted or given up.
 */
export async function runLoad(
  options: LoadOptions,
  hooks: readonly { atMs: number; run: () => Promise<void> }[],
): Promise<LoadResult> {
  const load = new SteadyLoad(options);
  const hooksDone = hooks.map((hook) => load.at(hook.atMs, hook.run));
  await load.send();
  const loadEnd = Date.now();
  await load.answered();
  await Promise.all(hooksDone);
  return load.result(loadEnd);
}

/** A gateway the load sends to. */
type Gateway = LoadOptions['gateways'][number];

/** One load's pace, its requests under way, and what they were answered. */
class SteadyLoad {
  readonly #o: LoadOptions;
  readonly #samples: Sample[] = [];
  readonly #accepted = new Map<string, AcceptedTask>();
  readonly #start = Date.now();
  /** When sending stops; `keepGoing` moves it on, up to `#latestEnd`. */
  #end: number;
  readonly #latestEnd: number;
  readonly #pending: Promise<unknown>[] = [];
  #inFlight = 0;
  #skipped = 0;
  #sent = 0;
  #neverAccepted = 0;

  constructor(options: LoadOptions) {
    this.#o = options;
    this.#end = this.#start + options.durationMs;
    this.#latestEnd = this.#end + (options.maxExtraMs ?? 0);
  }

  /** Runs `run` at `atMs` after the load started. */
  async at(atMs: number, run: () => Promise<void>): Promise<void> {
    await new Promise((r) => setTimeout(r, Math.max(0, this.#start + atMs - Date.now())));
    await run();
  }

  /** Sends submissions at the rate and probes at their pace until the end (extended or not). */
  async send(): Promise<void> {
    const submitEvery = 1000 / this.#o.rate;
    let nextSubmit = this.#start;
    let nextProbe = this.#start;
    let submitted = 0;
    let probes = 0;
    for (;;) {
      const now = Date.now();
      if (now >= this.#end) {
        if (now >= this.#latestEnd || !this.#o.keepGoing?.(this.#samples)) break;
        this.#end = Math.min(this.#latestEnd, now + PROBE_INTERVAL_MS);
      }
      while (nextSubmit <= now) {
        nextSubmit += submitEvery;
        if (this.#inFlight >= MAX_IN_FLIGHT) {
          this.#skipped++;
          continue;
        }
        this.#inFlight++;
        this.#sent++;
        this.#pending.push(this.#submit(submitted++).finally(() => this.#inFlight--));
      }
      if (nextProbe <= now) {
        nextProbe += PROBE_INTERVAL_MS;
        const n = probes++;
        for (const gw of this.#o.gateways) this.#pending.push(this.#probe(gw, n));
      }
      await new Promise((r) =>
        setTimeout(r, Math.max(1, Math.min(nextSubmit, nextProbe) - Date.now())),
      );
    }
  }

  /** Resolves once every request sent has its answer (or was given up). */
  async answered(): Promise<void> {
    await Promise.all(this.#pending);
  }

  result(loadEnd: number): LoadResult {
    return {
      samples: this.#samples,
      accepted: this.#accepted,
      neverAccepted: this.#neverAccepted,
      skipped: this.#skipped,
      sent: this.#sent,
      loadEnd,
    };
  }

  /** Submissions outlive the load by the retry window; an extended load extends it too. */
  #giveUpAt(): number {
    return this.#end + this.#o.retryWindowMs;
  }

  /** Submits key `n`, sending it again to the next gateway after no answer or a 429/5xx. */
  async #submit(n: number): Promise<void> {
    const key = `${this.#o.runId}-${n}`;
    const body = JSON.stringify({ input: key });
    const { gateways, apiKey } = this.#o;
    for (let attempt = 0; Date.now() < this.#giveUpAt(); attempt++) {
      const gw = gateways[(n + attempt) % gateways.length]!;
      const sentAt = Date.now();
      const { status, body: answer } = await call(`${gw.url}/v1/models/echo/infer`, apiKey, {
        method: 'POST',
        body,
        headers: { 'Idempotency-Key': key, Prefer: 'respond-async' },
      });
      const ok = (status === 200 || status === 202) && typeof answer?.['id'] === 'string';
      this.#samples.push({ kind: 'submit', region: gw.region, sentAt, at: Date.now(), status, ok });
      if (ok) {
        this.#noteAccepted(key, String(answer['id']), answer['state']);
        return;
      }
      if (!retryable(status)) break;
      await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
    }
    this.#neverAccepted++;
  }

  /** A key answered with a second task id is a duplicate: `settle` counts it. */
  #noteAccepted(key: string, id: string, state: unknown): void {
    const known = this.#accepted.get(key);
    if (known) known.ids.add(id);
    else
      this.#accepted.set(key, {
        key,
        id,
        ids: new Set([id]),
        acceptedAt: Date.now(),
        ...(isFinal(state) ? { state: String(state) } : {}),
      });
  }

  /** One synchronous request: served again means answered with its result within the wait. */
  async #probe(gw: Gateway, n: number): Promise<void> {
    const key = `${this.#o.runId}-probe-${gw.region}-${n}`;
    const sentAt = Date.now();
    const { status, body } = await call(`${gw.url}/v1/models/echo/infer`, this.#o.apiKey, {
      method: 'POST',
      body: JSON.stringify({ input: key }),
      headers: { 'Idempotency-Key': key, Prefer: `wait=${PROBE_WAIT_S}` },
    });
    const ok = status === 200 && body?.['state'] === 'succeeded';
    this.#samples.push({ kind: 'probe', region: gw.region, sentAt, at: Date.now(), status, ok });
    // A probe answered 202 was accepted all the same: it must reach a final state like the rest.
    if (status === 202 && typeof body?.['id'] === 'string') {
      const id = String(body['id']);
      this.#accepted.set(key, { key, id, ids: new Set([id]), acceptedAt: Date.now() });
    }
  }
}

/** What became of the accepted tasks. */
export interface SettleResult {
  /** Final state by key. */
  finalStates: Map<string, string>;
  /** Accepted keys with no final state by the deadline. */
  lost: string[];
  /** Keys with two task ids, or whose final result read differently twice. */
  twoOutcomes: string[];
  settledAt: number;
}

/**
 * Follows every accepted task to a final state until `deadline` (ms epoch), through any gateway,
 * then reads each final task once more through another gateway and compares.
 */
export async function settle(
  gateways: readonly { region: string; url: string }[],
  apiKey: string,
  accepted: ReadonlyMap<string, AcceptedTask>,
  deadline: number,
): Promise<SettleResult> {
  const finalStates = new Map<string, string>();
  const results = new Map<string, string>();
  const twoOutcomes = new Set<string>();
  const read = async (id: string, attempt: number) => {
    const gw = gateways[attempt % gateways.length]!;
    return call(`${gw.url}/v1/tasks/${id}`, apiKey, {
      method: 'GET',
      headers: { Prefer: 'wait=5' },
    });
  };
  const tasks = [...accepted.values()];
  for (const task of tasks) if (task.ids.size > 1) twoOutcomes.add(task.key);
  // Bounded parallelism: a few readers share the list.
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < tasks.length) {
        const task = tasks[next++]!;
        for (let attempt = 0; Date.now() < deadline; attempt++) {
          const { status, body } = await read(task.id, attempt);
          const state = String(body?.['state']);
          if (status === 200 && isFinal(state)) {
            finalStates.set(task.key, state);
            results.set(task.key, JSON.stringify([state, body?.['result'] ?? body?.['error']]));
            break;
          }
          if (status !== 200) await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
        }
      }
    }),
  );
  next = 0;
  const finished = tasks.filter((t) => results.has(t.key));
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < finished.length) {
        const task = finished[next++]!;
        const { status, body } = await read(task.id, 1);
        if (status !== 200) continue;
        const again = JSON.stringify([body?.['state'], body?.['result'] ?? body?.['error']]);
        if (again !== results.get(task.key)) twoOutcomes.add(task.key);
      }
    }),
  );
  return {
    finalStates,
    lost: tasks.filter((t) => !finalStates.has(t.key)).map((t) => t.key),
    twoOutcomes: [...twoOutcomes],
    settledAt: Date.now(),
  };
}
