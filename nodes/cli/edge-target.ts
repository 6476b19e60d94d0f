/**
 * Which edge the CLI talks to: the one its NATS settings name (`NATS_URL` and the admin user's
 * credentials; `VIGIL_REGION`), or else the local edge `npm start` is running, as described by
 * the launcher in `<state dir>/edge.json` (the admin user's seed file, or a password in
 * `<state dir>/nats-password`).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { NAME_TOKEN } from '../../protocol/index.js';
import {
  natsAuthOptions,
  natsConnectOptions,
  readNkeySeed,
  type NatsConnectOptions,
} from '../common/index.js';
import { PROJECT_ROOT } from '../launcher/index.js';
import type { CliSettings } from './config.js';

/** A failure the CLI reports as one line and exit code 1. */
export class CliError extends Error {
  override name = 'CliError';
}

/** Where an edge is and how to reach it. */
export interface EdgeTarget {
  nats: NatsConnectOptions;
  region: string;
  /** Where the settings came from, for error messages. */
  source: string;
}

/** How long the CLI waits for NATS before giving up, ms. */
export const CLI_CONNECT_TIMEOUT_MS = 5_000;

const edgeFileSchema = z.object({
  region: z.string().regex(NAME_TOKEN),
  natsUrl: z.string().min(1),
  natsUser: z.string().min(1).optional(),
  /** The admin user's seed file and inbox prefix (the launcher's per-role credentials). */
  natsNkey: z.string().min(1).optional(),
  natsInboxPrefix: z.string().min(1).optional(),
  gatewayUrl: z.string().optional(),
});

/**
 * The target the settings name, or the local edge's from the launcher's state files when they
 * name no NATS servers.
 * @throws CliError when neither names an edge.
 */
export function edgeTarget(settings: CliSettings): EdgeTarget {
  const regionOverride = settings.cli.region;
  if (settings.nats !== undefined) {
    const nats = natsConnectOptions(settings.nats, 'vigil-cli');
    return { nats, region: regionOverride ?? 'local', source: 'NATS_URL' };
  }
  const stateDir = settings.state.stateDir ?? join(PROJECT_ROOT, '.vigil');
  const file = join(stateDir, 'edge.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new CliError(
      `no running edge found (${file} does not exist): start one with \`npm start\`, ` +
        'or set NATS_URL (and NATS_USER, NATS_PASSWORD, VIGIL_REGION)',
    );
  }
  let edge: z.infer<typeof edgeFileSchema>;
  try {
    edge = edgeFileSchema.parse(JSON.parse(text));
  } catch (err) {
    throw new CliError(`${file} is not a valid edge description: ${(err as Error).message}`);
  }
  const nats: NatsConnectOptions = { servers: edge.natsUrl, name: 'vigil-cli' };
  if (edge.natsUser !== undefined) {
    const passwordFile = join(stateDir, 'nats-password');
    try {
      nats.user = edge.natsUser;
      nats.pass = readFileSync(passwordFile, 'utf8').trim();
    } catch {
      throw new CliError(
        `${file} names NATS user ${edge.natsUser}, but ${passwordFile} is missing`,
      );
    }
  }
  if (edge.natsNkey !== undefined) {
    try {
      nats.nkeySeed = readNkeySeed(edge.natsNkey, `natsNkey in ${file}`);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    if (edge.natsInboxPrefix !== undefined) nats.inboxPrefix = edge.natsInboxPrefix;
  }
  return { nats, region: regionOverride ?? edge.region, source: file };
}

/**
 * Connects once, without the reconnect-forever policy of the long-running nodes: a CLI should
 * fail fast when nothing is listening.
 * @throws CliError naming the server and where its address came from.
 */
export async function connectToEdge(target: EdgeTarget): Promise<NatsConnection> {
  const { nats } = target;
  try {
    return await connect({
      servers: nats.servers.split(',').map((s) => s.trim()),
      name: nats.name,
      ...natsAuthOptions(nats),
      maxReconnectAttempts: 0,
      timeout: CLI_CONNECT_TIMEOUT_MS,
      noAsyncTraces: true,
    });
  } catch (err) {
    const hint =
      target.source === 'NATS_URL'
        ? ''
        : ` (from ${target.source}: is the edge still running? start it with \`npm start\`)`;
    throw new CliError(
      `cannot connect to NATS at ${nats.servers}${hint}: ${(err as Error).message}`,
    );
  }
}
