/**
 * The controller's commands to one actor host, on `vigil.ctl.<region>.<host>.<command>`
 * (request/reply; the schema is `protocol/control-plane.ts`): restart a model's executor, or
 * drain the host. Every command gets an answer, a refusal included.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { SupervisedModel } from '../../actors/index.js';
import {
  HostCommandName,
  hostCommandSchema,
  subjects,
  type HostCommand,
  type HostCommandReply,
} from '../../protocol/index.js';

/** Options of {@link listenForCommands}. */
export interface HostCommandsOptions {
  region: string;
  hostId: string;
  /** The models the host serves, which `restart` may name. */
  models: readonly SupervisedModel[];
  /** What `drain` does; called once the reply is out. */
  onDrain: () => void;
  /** Called after each answered command (the host writes a heartbeat: a restart shows at once). */
  afterCommand: () => void;
  logger: Logger;
}

/** Subscribes to the host's command subject; the subscription ends with the connection. */
export function listenForCommands(nc: NatsConnection, o: HostCommandsOptions): void {
  const commands = subjects.hostCommandsOf(o.region, o.hostId);
  const prefix = commands.slice(0, -1); // the command is the last token
  nc.subscribe(commands, {
    callback: (err, msg) => {
      if (err) return o.logger.warn({ err }, 'command subscription failed');
      let parsed: ReturnType<typeof hostCommandSchema.safeParse>;
      try {
        parsed = hostCommandSchema.safeParse(msg.json());
      } catch {
        parsed = hostCommandSchema.safeParse(undefined);
      }
      if (!parsed.success) {
        msg.respond(JSON.stringify({ ok: false, error: 'unreadable command' }));
        return;
      }
      void runCommand(o, msg.subject.slice(prefix.length), parsed.data).then((reply) => {
        msg.respond(JSON.stringify(reply));
        o.afterCommand();
      });
    },
  });
}

/** Runs one command; never throws (the outcome is the reply). */
async function runCommand(
  o: HostCommandsOptions,
  command: string,
  body: HostCommand,
): Promise<HostCommandReply> {
  if (command === HostCommandName.Drain) {
    o.logger.warn({ reason: body.reason }, 'drain requested by the controller');
    // After the reply is flushed: the drain closes the connection the reply goes out on.
    setImmediate(o.onDrain);
    return { ok: true };
  }
  if (command !== HostCommandName.Restart)
    return { ok: false, error: `unknown command '${command}'` };
  const model = o.models.find((m) => m.handle.name === body.model);
  if (!model) return { ok: false, error: `model '${String(body.model)}' is not served here` };
  o.logger.warn(
    { model: body.model, reason: body.reason },
    'model restart requested by the controller',
  );
  try {
    await model.restart(body.reason ?? 'controller');
    return {
      ok: true,
      model: model.handle.name,
      pid: model.handle.pid,
      restarts: model.handle.restarts,
    };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}
