/**
 * One outcome per task, as the inference actor guarantees it, against a real nats-server: the
 * final record is written with compare-and-set, so an attempt that finishes second leaves the
 * first outcome standing; a drain hands in-flight deliveries back and their redelivery reuses a
 * stored outcome; a task whose executor died under it runs alone next time.
 *
 * The end-to-end suites cover these only by their totals (nothing lost, nothing doubled). Here
 * the other attempt is played by the test writing the task record itself, which is exactly what
 * another attempt's effect on the world is, so each interleaving happens every time instead of
 * when a process happens to stall. The model is a fake of the real `ModelHandle` whose runs the
 * test ends; NATS is real.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  createInferenceActor,
  ExecutorGoneError,
  type InferenceActor,
  type ModelHandle,
} from '../../actors/index.js';
import {
  assetNames,
  createVigilClient,
  decodeAs,
  encode,
  ENVELOPE_VERSION,
  ensureRegionAssets,
  ErrorCode,
  Priority,
  RetryableError,
  subjects,
  taskEventSchema,
  taskRecordSchema,
  TaskState,
  type TaskEvent,
  type TaskRecord,
  type VigilClient,
} from '../../protocol/index.js';
import { waitFor } from '../harness/edge.js';
import { startTestNats, type TestNats } from '../harness/nats.js';

const REGION = 'lab';
const TENANT = 'alpha';

/** A run the test ends itself. */
interface HeldRun {
  readonly input: unknown;
  finish(result: unknown): void;
}

/** A model whose runs wait for the test; an aborted run rejects as a runtime's would. */
function heldModel(name: string): { handle: ModelHandle; runs: HeldRun[] } {
  const runs: HeldRun[] = [];
  const handle: ModelHandle = {
    name,
    version: 'test-1',
    isolation: 'in-process',
    pid: process.pid,
    restarts: 0,
    available: true,
    run(input, _params, options) {
      return new Promise((resolve, reject) => {
        options.signal?.addEventListener(
          'abort',
          () => reject(new RetryableError('aborted', ErrorCode.DeadlineExceeded)),
          { once: true },
        );
        runs.push({ input, finish: resolve });
      });
    },
  };
  return { handle, runs };
}

/** The first run of a held model, once it started. */
function firstRun(runs: HeldRun[]): Promise<HeldRun> {
  return waitFor('the run to start', () => Promise.resolve(runs[0]));
}

describe('one outcome per task', () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let client: VigilClient;
  let tasks: KV;
  const actors: InferenceActor[] = [];

  before(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url });
    await ensureRegionAssets(nc, await jetstreamManager(nc), { region: REGION });
    client = await createVigilClient(nc, { region: REGION });
    tasks = await new Kvm(nc).open(assetNames.taskBucket(REGION));
  });

  after(async () => {
    await Promise.allSettled(actors.map((a) => a.stop()));
    await client?.close();
    await nc?.close();
    await nats?.[Symbol.asyncDispose]();
  });

  /** An actor on `model`'s queue, stopped after the suite. */
  async function startActor(
    model: ModelHandle,
    options: { runningMarkAfterMs?: number; concurrency?: number } = {},
  ): Promise<InferenceActor> {
    const actor = await createInferenceActor(nc, {
      region: REGION,
      model,
      actorId: `test/${model.name}/${actors.length}`,
      retryScheduleMs: [100],
      ...options,
    });
    actors.push(actor);
    return actor;
  }

  /** Accepts a task for `model` and returns its id without waiting for it. */
  async function submit(model: string, input: unknown): Promise<string> {
    const submission = await client.submit({
      tenant: TENANT,
      model,
      priority: Priority.Batch,
      input,
      params: {},
      deadline: Date.now() + 60_000,
      waitMs: 0,
    });
    return submission.taskId;
  }

  async function storedRecord(taskId: string): Promise<TaskRecord | undefined> {
    const entry = await tasks.get(taskId);
    return entry?.operation === 'PUT'
      ? decodeAs(taskRecordSchema, entry.value, 'task record')
      : undefined;
  }

  /** The record another attempt of the task would write, on another host. */
  function recordOfAnotherAttempt(
    taskId: string,
    model: string,
    state: TaskRecord['state'],
  ): TaskRecord {
    const record: TaskRecord = {
      v: ENVELOPE_VERSION,
      id: taskId,
      tenant: TENANT,
      model,
      version: 'test-1',
      state,
      attempt: 2,
      createdAt: Date.now(),
      actor: 'another-host/attempt',
    };
    if (state === TaskState.Succeeded) record.result = 'the other attempt finished first';
    return record;
  }

  /** Events published for a task from now on. */
  function recordEvents(taskId: string): TaskEvent[] {
    const events: TaskEvent[] = [];
    nc.subscribe(subjects.event(REGION, TENANT, taskId), {
      callback: (_err, msg) => {
        events.push(decodeAs(taskEventSchema, msg.data, 'event'));
      },
    });
    return events;
  }

  /**
   * Deliveries of `model`'s consumer not yet acknowledged (a handed-back one counts until it is
   * delivered again), and messages not yet delivered.
   */
  async function consumerState(model: string): Promise<{ unacked: number; pending: number }> {
    const info = await (
      await jetstreamManager(nc)
    ).consumers.info(assetNames.requestStream(REGION), assetNames.modelConsumer(model));
    return { unacked: info.num_ack_pending, pending: info.num_pending };
  }

  async function settled(model: string): Promise<void> {
    await waitFor(`${model}'s queue to drain`, async () => {
      const state = await consumerState(model);
      return state.unacked === 0 && state.pending === 0 ? true : undefined;
    });
  }

  test('an attempt that finishes after another stored the outcome leaves it standing', async () => {
    const { handle, runs } = heldModel('cas-create');
    // No `running` record: the slow attempt's final write is a create, which must lose.
    const actor = await startActor(handle, { runningMarkAfterMs: 60_000 });
    const taskId = await submit(handle.name, 'slow');
    const events = recordEvents(taskId);
    const run = await firstRun(runs);

    const first = recordOfAnotherAttempt(taskId, handle.name, TaskState.Succeeded);
    await tasks.create(taskId, encode(first));
    run.finish('this attempt was slower');
    await settled(handle.name);

    assert.deepEqual(await storedRecord(taskId), first, 'the first final record stands');
    const stats = actor.stats();
    assert.equal(stats.superseded, 1);
    assert.equal(stats.succeeded, 0, 'a superseded success is not counted as one');
    assert.deepEqual(
      events.filter((e) => e.type === TaskState.Succeeded),
      [],
      'the outcome was announced by the attempt that stored it, not again',
    );
  });

  test("a final write retries on another attempt's running record and stores its outcome", async () => {
    const { handle, runs } = heldModel('cas-update');
    const actor = await startActor(handle, { runningMarkAfterMs: 0 });
    const taskId = await submit(handle.name, 'overtaken while running');
    const run = await firstRun(runs);
    await waitFor('the running record', async () =>
      (await storedRecord(taskId))?.state === TaskState.Running ? true : undefined,
    );

    // Another attempt marks itself running over this one's record: not an outcome, so the
    // final write must follow the new revision instead of giving up.
    await tasks.put(taskId, encode(recordOfAnotherAttempt(taskId, handle.name, 'running')));
    run.finish('stored after all');
    await settled(handle.name);

    const stored = await storedRecord(taskId);
    assert.equal(stored?.state, TaskState.Succeeded);
    assert.equal(stored?.result, 'stored after all');
    assert.match(stored?.actor ?? '', /^test\/cas-update\//, "this attempt's record");
    assert.equal(actor.stats().succeeded, 1);
    assert.equal(actor.stats().superseded, 0);
  });

  test('an attempt that finds an outcome when it marks itself running is aborted', async () => {
    const { handle, runs } = heldModel('cas-mark');
    const actor = await startActor(handle, { runningMarkAfterMs: 500 });
    const taskId = await submit(handle.name, 'already done elsewhere');
    await firstRun(runs);
    const first = recordOfAnotherAttempt(taskId, handle.name, TaskState.Succeeded);
    await tasks.create(taskId, encode(first));

    // The run is never finished by the test: only the abort can end it.
    await settled(handle.name);
    assert.deepEqual(await storedRecord(taskId), first);
    assert.equal(actor.stats().superseded, 1);
    assert.equal(actor.stats().deadLettered, 0, 'an aborted, superseded run is no failure');
  });

  test('a drain hands in-flight work back; the redelivery reuses the stored outcome', async () => {
    const held = heldModel('hand-back');
    const draining = await startActor(held.handle);
    const taskId = await submit(held.handle.name, 'interrupted');
    await firstRun(held.runs);
    const started = Date.now();
    await draining.drain(0);
    const drainMs = Date.now() - started;
    // Handed back, not held: the next actor gets it at once, long before the 30 s ack wait.
    assert.deepEqual(await consumerState(held.handle.name), { unacked: 1, pending: 0 });

    // Meanwhile another attempt finished the task (on a host that got it first).
    const first = recordOfAnotherAttempt(taskId, held.handle.name, TaskState.Succeeded);
    await tasks.create(taskId, encode(first));
    const next = heldModel('hand-back');
    const reusing = await startActor(next.handle);
    await settled(next.handle.name);

    console.log(`drain(0) handed the in-flight delivery back in ${drainMs} ms`);
    assert.equal(next.runs.length, 0, 'the redelivery did not run the model again');
    assert.equal(reusing.stats().reused, 1);
    assert.deepEqual(await storedRecord(taskId), first);
  });

  test('a task whose executor died under it runs alone on its next attempt', async () => {
    let running = 0;
    const concurrentWithSuspect: number[] = [];
    let killed = false;
    let suspectDone = false;
    let neighboursAfterSuspect = 0;
    const model: ModelHandle = {
      ...heldModel('suspect').handle,
      async run(input) {
        running += 1;
        if (input !== 'poison' && suspectDone) neighboursAfterSuspect += 1;
        try {
          if (input === 'poison' && !killed) {
            killed = true;
            await new Promise((resolve) => setTimeout(resolve, 50));
            throw new ExecutorGoneError('suspect', 'killed by its task');
          }
          if (input === 'poison') concurrentWithSuspect.push(running);
          await new Promise((resolve) => setTimeout(resolve, 150));
          if (input === 'poison') {
            concurrentWithSuspect.push(running);
            suspectDone = true;
          }
          return input;
        } finally {
          running -= 1;
        }
      },
    };
    const actor = await startActor(model, { concurrency: 4 });
    const ids = [await submit('suspect', 'poison')];
    for (let i = 0; i < 12; i += 1) ids.push(await submit('suspect', `neighbour ${i}`));
    await settled('suspect');

    const states = await Promise.all(ids.map(async (id) => (await storedRecord(id))?.state));
    assert.deepEqual(
      states,
      ids.map(() => TaskState.Succeeded),
    );
    console.log(
      `suspect's second run saw ${concurrentWithSuspect.join(', ')} run(s) at once; ` +
        `${neighboursAfterSuspect} neighbours waited for it; ` +
        `${actor.stats().processed} runs for ${ids.length} tasks`,
    );
    assert.deepEqual(concurrentWithSuspect, [1, 1], 'the suspect ran alone');
    assert.ok(neighboursAfterSuspect > 0, 'it ran while neighbours were queued, not after them');
    assert.equal(actor.stats().processed, ids.length + 1, 'only the crash was run twice');
  });
});
