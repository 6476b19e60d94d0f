/** RFC 7240 `Prefer`, as the submit routes, the task route and the tenant limits read it. */

/** What a `Prefer` header asks for. */
export interface Preference {
  /** `respond-async`: answer 202 once the task is accepted. */
  respondAsync: boolean;
  /** `wait=<seconds>`, in ms; absent when not asked for (or not a number of seconds). */
  waitMs?: number;
}

/** Reads `respond-async` and `wait=<seconds>` from a `Prefer` header. */
export function parsePrefer(header: string | undefined): Preference {
  const result: Preference = { respondAsync: false };
  for (const part of (header ?? '').split(',')) {
    const [name, value] = part.trim().toLowerCase().split('=');
    if (name === 'respond-async') result.respondAsync = true;
    if (name === 'wait' && value !== undefined && /^\d{1,6}$/.test(value))
      result.waitMs = Number(value) * 1000;
  }
  return result;
}
