/**
 * Compare-and-set on a KV bucket: Vigil's task records, quota counters and dead-letter replays
 * are written conditionally on the revision the writer last saw, and losing that race is an
 * answer, not a failure. One check of that answer, for every writer.
 */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';

/**
 * True when a conditional KV write (`create`, or `update` at a revision) lost: the key exists
 * already, or its revision is no longer the one expected. The writer re-reads and decides again.
 */
export function isRevisionConflict(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}
