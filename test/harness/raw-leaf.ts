/**
 * A leaf link spoken by hand: a TCP connection to a hub's leaf listener that authenticates with
 * a user's nkey and then sends whatever the test says, as a compromised edge machine would. A
 * real nats-server at the edge obeys the permissions its hub sends it and never puts a refused
 * message on the wire; this link ignores them, so what a test sees is the hub's own enforcement.
 */
import { connect } from 'node:net';
import { fromSeed } from '@nats-io/nkeys';

/** An open hand-spoken leaf link. */
export interface RawLeafLink {
  /** Everything the hub has sent on the link so far. */
  received(): string;
  /** Asks the hub for messages on `subject` (the leaf protocol's `LS+`). */
  subscribe(subject: string): void;
  /** Sends a message into the hub (`LMSG`), with a reply subject when given. */
  publish(subject: string, payload: Uint8Array | string, reply?: string): void;
  /** Resolves with everything received once it matches `pattern`; rejects after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves when the hub has closed the link. */
  readonly closed: Promise<void>;
  close(): void;
}

/**
 * Dials `hostPort` (the hub's leaf listener) and authenticates as the user of `seed`: signs the
 * nonce of the hub's INFO and sends the leaf CONNECT. Resolves once the hub answered the PING
 * that follows, with a PONG (accepted) or an `-ERR` (refused: see `received`).
 */
export async function openRawLeafLink(
  hostPort: { host: string; port: number },
  seed: Uint8Array,
  name = 'hand-spoken-leaf',
): Promise<RawLeafLink> {
  const socket = connect(hostPort);
  let text = '';
  const waiters = new Set<() => void>();
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    text += chunk;
    // The hub pings idle links; an unanswered ping would end the link mid-test.
    if (/^PING\r$/m.test(chunk)) socket.write('PONG\r\n');
    for (const wake of waiters) wake();
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined);
  void closed.then(() => {
    for (const wake of waiters) wake();
  });
  const waitFor = (pattern: RegExp, timeoutMs = 5_000): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): boolean => {
        if (!pattern.test(text)) return false;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(text);
        return true;
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no ${pattern} from the hub within ${timeoutMs} ms; got:\n${text}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  const send = (line: string): void => void socket.write(line);

  const info = await waitFor(/^INFO (.*)\r\n/);
  const { nonce } = JSON.parse(/^INFO (.*)\r\n/.exec(info)![1]!) as { nonce?: string };
  if (!nonce) throw new Error('the hub sent no nonce: it does not ask leaf links for an nkey');
  const keys = fromSeed(seed);
  const sig = Buffer.from(keys.sign(new TextEncoder().encode(nonce))).toString('base64url');
  const connectInfo = { nkey: keys.getPublicKey(), sig, name, headers: true, protocol: 1 };
  send(`CONNECT ${JSON.stringify(connectInfo)}\r\nPING\r\n`);
  await waitFor(/^(PONG|-ERR .*)\r$/m);
  return {
    received: () => text,
    subscribe: (subject) => send(`LS+ ${subject}\r\n`),
    publish(subject, payload, reply) {
      const bytes = Buffer.from(payload);
      send(`LMSG ${subject}${reply ? ` ${reply}` : ''} ${bytes.length}\r\n`);
      socket.write(bytes);
      send('\r\n');
    },
    waitFor,
    closed,
    close: () => socket.destroy(),
  };
}
