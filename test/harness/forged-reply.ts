/** A forged outcome, for the tests of who may publish on reply subjects (the trust boundary). */
import { encode } from '../../protocol/index.js';

/** A final record for task `id` of tenant alpha that no actor wrote. */
export function forgedReply(id: string): Uint8Array {
  const now = Date.now();
  return encode({
    v: 1,
    id,
    tenant: 'alpha',
    model: 'echo',
    version: 'v1',
    state: 'succeeded',
    attempt: 1,
    createdAt: now,
    finishedAt: now,
    result: { echo: 'FORGED' },
  });
}
