/**
 * Every NATS subject Vigil uses, built in one place. Names that become subject tokens (region,
 * model, version, ids) are validated first: a dot or wildcard smuggled into a model name would
 * otherwise change which consumer sees a message.
 */
import { ValidationError } from './errors.js';

/** A subject token Vigil accepts for names: lowercase, digits, `_` and `-`, 1 to 64 chars. */
export const NAME_TOKEN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** Task ids: 26 lowercase base32 characters (128 bits), as made by `newTaskId`. */
export const TASK_ID = /^[a-z2-7]{26}$/;

/** Priority classes, in the subject so that consumers can favour interactive work. */
export const Priority = {
  Interactive: 'interactive',
  Batch: 'batch',
} as const;

/** One of the {@link Priority} values. */
export type Priority = (typeof Priority)[keyof typeof Priority];

/** True when `value` is a valid name token (see {@link NAME_TOKEN}). */
export function isNameToken(value: string): boolean {
  return NAME_TOKEN.test(value);
}

/**
 * Returns `value` when it is a valid name token.
 * @throws ValidationError naming `what` otherwise.
 */
export function nameToken(value: string, what: string): string {
  if (!NAME_TOKEN.test(value)) {
    throw new ValidationError(
      'must be 1-64 characters of a-z, 0-9, "_" or "-", starting with a letter or digit',
      what,
    );
  }
  return value;
}

/** The tokens of a request subject, `vigil.req.<region>.<model>.<priority>.<taskId>`. */
export interface RequestSubject {
  region: string;
  model: string;
  priority: string;
  /** The task the stream accepted: its `Nats-Msg-Id` and the key of its record. */
  taskId: string;
}

/**
 * The tokens of `subject` when it has the request layout (six tokens under `vigil.req.`, the last
 * a task id); undefined otherwise. The stream takes `vigil.req.<region>.>`, so a publisher that
 * breaks the layout still gets its message stored: readers must check, not assume.
 */
export function parseRequestSubject(subject: string): RequestSubject | undefined {
  const tokens = subject.split('.');
  if (tokens.length !== 6 || tokens[0] !== 'vigil' || tokens[1] !== 'req') return undefined;
  const [, , region, model, priority, taskId] = tokens as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  return TASK_ID.test(taskId) ? { region, model, priority, taskId } : undefined;
}

/** Subject builders. Requests carry the task id last so a pending task can be found by subject. */
export const subjects = {
  /** Where a request for `model` is published in `region`. */
  request(region: string, model: string, priority: Priority, taskId: string): string {
    return `vigil.req.${region}.${model}.${priority}.${taskId}`;
  },
  /** Every request of a region: the request stream's subject. */
  requestsOfRegion(region: string): string {
    return `vigil.req.${region}.>`;
  },
  /** The filter of one model's consumer in a region. */
  requestsOfModel(region: string, model: string): string {
    return `vigil.req.${region}.${model}.>`;
  },
  /** Finds a pending task by id regardless of model and priority. */
  requestById(region: string, taskId: string): string {
    return `vigil.req.${region}.*.*.${taskId}`;
  },
  /**
   * Where an edge site's gateway publishes a request for its hub `region`: into the site's own
   * stream, which the hub's request stream sources (store-and-forward across the leaf link).
   */
  edgeRequest(
    site: string,
    region: string,
    model: string,
    priority: Priority,
    taskId: string,
  ): string {
    return `vigil.edge.${site}.req.${region}.${model}.${priority}.${taskId}`;
  },
  /** Every request an edge site holds for its hub `region`: what the hub sources. */
  edgeRequestsForRegion(site: string, region: string): string {
    return `vigil.edge.${site}.req.${region}.>`;
  },
  /** Every subject of an edge site's stream. */
  edgeRequestsOfSite(site: string): string {
    return `vigil.edge.${site}.req.>`;
  },
  /** Finds a task still held at an edge site, by id. */
  edgeRequestById(site: string, region: string, taskId: string): string {
    return `vigil.edge.${site}.req.${region}.*.*.${taskId}`;
  },
  /** The core (non-persistent) subject on which an actor tells the waiting gateway a task ended. */
  reply(gatewayId: string, taskId: string): string {
    return `vigil.reply.${gatewayId}.${taskId}`;
  },
  /** What one gateway subscribes to for all its replies. */
  repliesOfGateway(gatewayId: string): string {
    return `vigil.reply.${gatewayId}.>`;
  },
  /** Every reply subject, of every gateway and service. */
  allReplies: 'vigil.reply.>',
  /**
   * The events of a task: its lifecycle, progress and (for a streamed task) its tokens, kept for
   * a while by the region's event stream. Internal services follow their tenant's tasks on
   * `vigil.evt.<region>.<tenant>.>`, live or from the stream.
   */
  event(region: string, tenant: string, taskId: string): string {
    return `vigil.evt.${region}.${tenant}.${taskId}`;
  },
  /** Every event of one tenant's tasks in a region. */
  eventsOfTenant(region: string, tenant: string): string {
    return `vigil.evt.${region}.${tenant}.>`;
  },
  /** Every task event of a region: the event stream's subject. */
  eventsOfRegion(region: string): string {
    return `vigil.evt.${region}.>`;
  },
  /** Dead-letter records of a model in a region. */
  deadLetter(region: string, model: string): string {
    return `vigil.dlq.${region}.${model}`;
  },
  /** Every dead letter of a region: the dead-letter stream's subject. */
  deadLettersOfRegion(region: string): string {
    return `vigil.dlq.${region}.>`;
  },
  /** A controller's command to one actor host (`control-plane.ts`), request/reply. */
  hostCommand(region: string, host: string, command: string): string {
    return `vigil.ctl.${region}.${host}.${command}`;
  },
  /** Every command addressed to one actor host: what the host subscribes to. */
  hostCommandsOf(region: string, host: string): string {
    return `vigil.ctl.${region}.${host}.*`;
  },
  /** Every command addressed to the actor hosts of a region. */
  commandsOfRegion(region: string): string {
    return `vigil.ctl.${region}.>`;
  },
  /** Every command of every region: what the controller may send. */
  allCommands: 'vigil.ctl.>',
  /** An alert the controller raises (JSON), firing or resolved. */
  alert(severity: string, rule: string): string {
    return `vigil.alert.${severity}.${rule}`;
  },
  /** Every alert. */
  allAlerts: 'vigil.alert.>',
  /** The record of one run of a recovery action (stream `VIGIL_CONTROL_LOG`). */
  actionLog(rule: string): string {
    return `vigil.ctl-log.${rule}`;
  },
  /** Every action record: the control log stream's subject. */
  allActionLogs: 'vigil.ctl-log.>',
  /** An actor host's NATS service status endpoint for one model. */
  serviceStatus(region: string, model: string, host: string): string {
    return `vigil.svc.${region}.${model}.status.${host}`;
  },
  /** Every service endpoint of a region's actor hosts. */
  servicesOfRegion(region: string): string {
    return `vigil.svc.${region}.>`;
  },
} as const;
