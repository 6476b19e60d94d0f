/**
 * A TCP relay that a test can cut and restore: it stands for a network link (an edge site's leaf
 * connection to its hub) so that the link can fail while both ends keep running.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

/** A running relay. */
export interface TcpProxy {
  /** The port it listens on (127.0.0.1); the same after a restore. */
  readonly port: number;
  /** Where new connections go (a relay can be started before what it relays to). */
  retarget(target: { host: string; port: number }): void;
  /** Drops every relayed connection and refuses new ones. */
  cut(): Promise<void>;
  /** Listens again on the same port. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

/** Relays 127.0.0.1:<random port> to `target`; until it has one, connections are dropped. */
export async function startTcpProxy(initial?: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let target = initial;
  const relay = (client: Socket) => {
    if (!target) {
      client.destroy();
      return;
    }
    const upstream = connect(target);
    sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  };
  let server: Server = createServer(relay);
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port }, () => {
        const address = server.address();
        resolve(typeof address === 'object' && address ? address.port : port);
      });
    });
  const port = await listen(0);
  let listening = true;
  const cut = async () => {
    if (!listening) return;
    listening = false;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    await closed;
  };
  return {
    port,
    retarget(next) {
      target = next;
    },
    cut,
    async restore() {
      if (listening) return;
      server = createServer(relay);
      await listen(port);
      listening = true;
    },
    close: cut,
  };
}
