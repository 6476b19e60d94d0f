/** Deployment files parse with the nats-server we ship against (`nats-server -t`). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { natsServerBin } from '../../scripts/nats-server-provision.mjs';
import { PROJECT_ROOT } from '../../nodes/launcher/node-process.js';

test('deploy/nats/single-node.conf is a valid nats-server configuration', () => {
  const store = mkdtempSync(join(tmpdir(), 'vigil-conf-'));
  try {
    const check = (password: string) =>
      spawnSync(natsServerBin(), ['-t', '-c', join(PROJECT_ROOT, 'deploy/nats/single-node.conf')], {
        env: { ...process.env, VIGIL_NATS_STORE_DIR: store, VIGIL_NATS_PASSWORD: password },
        encoding: 'utf8',
      });
    const ok = check('s3cret-from-env');
    assert.equal(ok.status, 0, ok.stderr + ok.stdout);
    assert.match(ok.stderr + ok.stdout, /configuration file .* is valid/);
  } finally {
    rmSync(store, { recursive: true, force: true });
  }
});
