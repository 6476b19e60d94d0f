// The harness itself, against real nats-server processes: a server starts, JetStream stores and
// keeps messages across kill -9, a 3-node cluster keeps acking with one node down, and nothing
// is left running afterwards.

import * as assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';

import { processAlive } from './processes.js';
import { startTestCluster, startTestNats, waitForJetStream } from './nats.js';

/** Every pid any test started, checked at the end. */
const pids = new Set<number>();

const alive = processAlive;

describe('nats test harness', () => {
  test('a single server starts and JetStream stores a message', async () => {
    await using srv = await startTestNats();
    pids.add(srv.pid);
    assert.match(srv.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
    assert.ok(srv.port > 0);

    const nc = await connect({ servers: srv.url });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'SINGLE', subjects: ['single.>'], storage: 'file' });
      const ack = await jetstream(nc).publish('single.a', 'hello');
      assert.equal(ack.stream, 'SINGLE');
      assert.equal(ack.seq, 1);
      const msg = await jsm.streams.getMessage('SINGLE', { seq: 1 });
      assert.equal(msg?.string(), 'hello');
    } finally {
      await nc.close();
    }
  });

  test('kill -9 and restart keep a file-stored stream on the same port', async () => {
    await using srv = await startTestNats();
    const firstPid = srv.pid;
    const port = srv.port;
    pids.add(firstPid);

    const nc = await connect({ servers: srv.url });
    const published = 100;
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'DURABLE', subjects: ['durable.>'], storage: 'file' });
      const js = jetstream(nc);
      for (let i = 0; i < published; i++) await js.publish(`durable.${i}`, `m${i}`);
    } finally {
      await nc.close();
    }

    await srv.kill('SIGKILL');
    assert.equal(alive(firstPid), false, 'the killed server is gone');
    await srv.restart();
    pids.add(srv.pid);
    assert.notEqual(srv.pid, firstPid);
    assert.equal(srv.port, port, 'restart reuses the client port');

    const nc2 = await connect({ servers: srv.url });
    try {
      await waitForJetStream([srv.url], 15_000);
      const jsm = await jetstreamManager(nc2);
      const info = await jsm.streams.info('DURABLE');
      console.log(`after kill -9: ${info.state.messages}/${published} messages kept`);
      assert.equal(info.state.messages, published);
      const last = await jsm.streams.getMessage('DURABLE', { seq: published });
      assert.equal(last?.string(), `m${published - 1}`);
    } finally {
      await nc2.close();
    }
  });

  test('a 3-node cluster keeps acking an R3 stream with one node killed', async () => {
    await using cluster = await startTestCluster({ nodes: 3, jetstream: true });
    for (const n of cluster.nodes) pids.add(n.pid);
    assert.equal(cluster.nodes.length, 3);
    assert.equal(new Set(cluster.urls).size, 3);

    const nc = await connect({ servers: cluster.urls, maxReconnectAttempts: -1 });
    try {
      const jsm = await jetstreamManager(nc);
      const si = await jsm.streams.add({
        name: 'REPLICATED',
        subjects: ['rep.>'],
        storage: 'file',
        num_replicas: 3,
      });
      assert.equal(si.config.num_replicas, 3);
      // Short timeouts: after the kill a publish may wait for a reconnect and a new stream leader,
      // and retrying soon beats one long wait.
      const js = jetstream(nc, { timeout: 2_000 });
      await js.publish('rep.before', 'before');

      // Kill the stream leader's server when it is not the one we are connected to, else another:
      // either way one of three replicas is gone and a quorum of two remains.
      const leader = (await jsm.streams.info('REPLICATED')).cluster?.leader;
      const victim =
        cluster.nodes.find((n) => n.options.serverName === leader) ?? cluster.nodes[0]!;
      await victim.kill('SIGKILL');
      assert.equal(alive(victim.pid), false);

      let acked = 0;
      const deadline = Date.now() + 20_000;
      // The first publishes may wait for a new stream leader; retries with the same msgID are
      // deduplicated, so each message is stored once.
      for (let i = 0; i < 10; i++) {
        for (;;) {
          try {
            await js.publish(`rep.after.${i}`, `after ${i}`, { msgID: `after-${i}` });
            acked++;
            break;
          } catch (err) {
            if (Date.now() > deadline) throw err;
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      }
      const info = await jsm.streams.info('REPLICATED');
      console.log(
        `with one node killed: ${acked}/10 publishes acked, stream holds ${info.state.messages}`,
      );
      assert.equal(acked, 10);
      assert.equal(info.state.messages, 11);
    } finally {
      await nc.close();
    }
  });

  after(() => {
    // Every `await using` above has stopped its servers by now.
    const left = [...pids].filter(alive);
    console.log(`servers started: ${pids.size}, still running: ${left.length}`);
    assert.deepEqual(left, [], 'no nats-server process outlives the tests');
  });
});
