/**
 * The control plane's messages: commands the controller sends an actor host on
 * `vigil.ctl.<region>.<host>.<command>` (request/reply, JSON so an operator can send one with
 * `nats req`), and the host's answer. Subjects are built in `subjects.ts` with the rest.
 */
import { z } from 'zod';

/** What a controller may ask of an actor host. */
export const HostCommandName = {
  /** Restart a model's executor (the supervisor's restart, as after a crash). */
  Restart: 'restart',
  /** Drain the host and stop it, as its orchestrator would (SIGTERM). */
  Drain: 'drain',
} as const;

/** One of the {@link HostCommandName} values. */
export type HostCommandName = (typeof HostCommandName)[keyof typeof HostCommandName];

/** A command's body. */
export const hostCommandSchema = z.object({
  /** The model it concerns (`restart`). */
  model: z.string().max(64).optional(),
  /** Why, for the host's log: the controller names the alert rule. */
  reason: z.string().max(512).optional(),
});

/** A validated command body. */
export type HostCommand = z.infer<typeof hostCommandSchema>;

/** The host's answer to a command. */
export const hostCommandReplySchema = z.union([
  z.object({
    ok: z.literal(true),
    model: z.string().optional(),
    pid: z.number().int().optional(),
    restarts: z.number().int().optional(),
  }),
  z.object({ ok: z.literal(false), error: z.string() }),
]);

/** One of the answers {@link hostCommandReplySchema} describes. */
export type HostCommandReply = z.infer<typeof hostCommandReplySchema>;
