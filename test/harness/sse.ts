/**
 * Reading a Server-Sent Events response in tests, with a real SSE parser: every event in order,
 * the comments (keep-alives) counted, until the server ends the stream or the reader stops.
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';

/** One parsed event, with when it arrived. */
export interface ReceivedEvent extends EventSourceMessage {
  at: number;
}

/** What {@link readEvents} saw. */
export interface ReadEvents {
  events: ReceivedEvent[];
  /** Comment lines (keep-alives), with when each arrived. */
  comments: number[];
  /** The server ended the stream (not the reader). */
  ended: boolean;
}

/**
 * Reads `res`'s events until the stream ends, or `stopWhen` says so for an event (the reader then
 * cancels the body: the client goes away), or `timeoutMs` passes (then it throws).
 */
export async function readEvents(
  res: Response,
  options: {
    stopWhen?: (event: ReceivedEvent, seen: ReceivedEvent[]) => boolean;
    timeoutMs?: number;
  } = {},
): Promise<ReadEvents> {
  const events: ReceivedEvent[] = [];
  const comments: number[] = [];
  let stop = false;
  const parser = createParser({
    onEvent(message) {
      if (stop) return;
      const event = { ...message, at: Date.now() };
      events.push(event);
      if (options.stopWhen?.(event, events)) stop = true;
    },
    onComment() {
      comments.push(Date.now());
    },
  });
  if (!res.body) throw new Error(`no body (status ${res.status})`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const timeoutMs = options.timeoutMs ?? 30_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void reader.cancel();
  }, timeoutMs);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (timedOut) {
        throw new Error(`stream not over after ${timeoutMs} ms: ${JSON.stringify(events)}`);
      }
      if (done) return { events, comments, ended: true };
      parser.feed(value);
      if (stop) {
        await reader.cancel();
        return { events, comments, ended: false };
      }
    }
  } finally {
    clearTimeout(timer);
  }
}

/** The JSON data of an event. */
export function dataOf<T = Record<string, unknown>>(event: EventSourceMessage): T {
  return JSON.parse(event.data) as T;
}
