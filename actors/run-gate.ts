/**
 * The actor's run gate. A task that was running when its executor died may be the one that killed
 * it: it becomes a suspect, and its next attempt runs alone, so a poison task dies after its own
 * attempts without burning its neighbours'. Every other task runs beside the others, up to the
 * mailbox's concurrency.
 */

/** Suspect task ids remembered per actor. */
const MAX_SUSPECTS = 1024;

/** A task's way through the gate. */
export interface RunGate {
  /**
   * Waits until `taskId` may run: at once beside other shared runs, or, for a suspect, once
   * nothing else runs. Suspects are served before new shared runs, so a busy queue cannot starve
   * one.
   */
  enter(taskId: string): Promise<RunPass>;
}

/** Held while a task runs. */
export interface RunPass {
  /** The task is a suspect and runs alone. */
  readonly alone: boolean;
  /**
   * Lets the next runs in. `executorDied` makes the task a suspect (its executor died under it);
   * a suspect that ran alone without killing its executor is cleared. Idempotent.
   */
  leave(executorDied: boolean): void;
}

/** A gate with no suspects yet. */
export function createRunGate(): RunGate {
  return new RunGateImpl();
}

class RunGateImpl implements RunGate {
  /** Tasks that were running when their executor died (bounded: oldest forgotten first). */
  readonly #suspects = new BoundedSet<string>(MAX_SUSPECTS);
  readonly #lock = new SharedExclusiveLock();

  async enter(taskId: string): Promise<RunPass> {
    const alone = this.#suspects.has(taskId);
    const release = await this.#lock.acquire(alone);
    let left = false;
    return {
      alone,
      leave: (executorDied) => {
        if (left) return;
        left = true;
        release();
        if (executorDied) this.#suspects.add(taskId);
        else if (alone) this.#suspects.delete(taskId);
      },
    };
  }
}

/** A set that forgets its oldest entries past `limit`. */
class BoundedSet<T> {
  readonly #items = new Set<T>();
  constructor(readonly limit: number) {}
  has(item: T): boolean {
    return this.#items.has(item);
  }
  add(item: T): void {
    this.#items.add(item);
    if (this.#items.size > this.limit) this.#items.delete(this.#items.values().next().value as T);
  }
  delete(item: T): void {
    this.#items.delete(item);
  }
}

/**
 * Shared runs go together; an exclusive run waits for them to end and runs alone. Exclusive
 * requests are served before new shared ones, so a suspect is not starved by a busy queue.
 */
class SharedExclusiveLock {
  #shared = 0;
  #exclusive = false;
  #exclusiveWaiting = 0;
  #wakers: (() => void)[] = [];

  async acquire(exclusive: boolean): Promise<() => void> {
    if (exclusive) this.#exclusiveWaiting += 1;
    while (this.#exclusive || (exclusive ? this.#shared > 0 : this.#exclusiveWaiting > 0)) {
      await new Promise<void>((resolve) => this.#wakers.push(resolve));
    }
    if (exclusive) {
      this.#exclusiveWaiting -= 1;
      this.#exclusive = true;
    } else {
      this.#shared += 1;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (exclusive) this.#exclusive = false;
      else this.#shared -= 1;
      const wakers = this.#wakers;
      this.#wakers = [];
      for (const wake of wakers) wake();
    };
  }
}
