/**
 * Who may do what on NATS: Vigil's roles and the subject permissions of each, as data. Every
 * Vigil subject comes from the builders in `subjects.ts` and every asset name from
 * `definitions.ts`, so a renamed subject changes the permissions with it. Rendering these into a
 * nats-server configuration, and the keys, live in `nodes/launcher/nats-accounts.ts`.
 *
 * The sets are the least each role needs, found by running the real nodes under them until no
 * nats-server "Permissions Violation" remained (see docs/architecture.md, "Security").
 */
import { assetNames, edgeDomain, HUB_DOMAIN } from './definitions.js';
import { nameToken, subjects } from './subjects.js';

/** The roles a NATS user of Vigil can have. */
export const Role = {
  /** HTTP gateways: submit to any region (spill-over), read every region's state, quota leases. */
  Gateway: 'gateway',
  /** Actor hosts of one region: pull its requests, write its task records, heartbeats, letters. */
  ActorHost: 'actor-host',
  /** The control plane: reads JetStream state, writes the model catalog and its own bucket. */
  Controller: 'controller',
  /** Internal services using `createVigilClient`: submit and follow tasks, nothing else. */
  Service: 'service',
  /** Operators and provisioning: everything in the application account. */
  Admin: 'admin',
  /** Server monitoring through the system account. */
  Sys: 'sys',
  /**
   * The gateway of one edge site, connected to the site's leaf node: its own site's stream, and
   * the gateway's grants on the hub through the hub's JetStream domain.
   */
  EdgeGateway: 'edge-gateway',
  /**
   * An edge site's leaf link into its hub region: the user the site's nats-server presents. Its
   * permissions are the hub's view of the link: `publish` is what the hub accepts from the site,
   * `subscribe` what the hub sends to it.
   */
  Leaf: 'leaf',
} as const;

/** One of the {@link Role} values. */
export type Role = (typeof Role)[keyof typeof Role];

/** The two NATS accounts: Vigil's data and the server's system account. */
export const NatsAccount = {
  App: 'VIGIL',
  System: 'SYS',
} as const;

/** One of the {@link NatsAccount} values. */
export type NatsAccount = (typeof NatsAccount)[keyof typeof NatsAccount];

/**
 * How a user may connect (nats-server's `allowed_connection_types`): leaf users only as a leaf
 * link, every other user only as a client, so no seed opens the other kind of connection.
 */
export const ConnectionType = {
  Client: 'STANDARD',
  Leaf: 'LEAFNODE',
} as const;

/** One of the {@link ConnectionType} values. */
export type ConnectionType = (typeof ConnectionType)[keyof typeof ConnectionType];

/** The NATS services protocol's discovery subjects (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`). */
export const SERVICE_DISCOVERY = '$SRV.>';

/** A wildcard token, for a builder's token that may take any value. */
const ANY = '*';

/** The stream behind a KV bucket (NATS's naming, not Vigil's). */
export function kvStreamName(bucket: string): string {
  return `KV_${bucket}`;
}

/** JetStream API subjects (`$JS.API.*`), for the buckets and streams a role may use. */
export const jsApi = {
  /** Account info: every JetStream client's first request. */
  accountInfo: '$JS.API.INFO',
  streamNames: '$JS.API.STREAM.NAMES',
  streamList: '$JS.API.STREAM.LIST',
  streamInfo: (stream: string): string => `$JS.API.STREAM.INFO.${stream}`,
  /** Reads one message from the stream's leader, by sequence or last subject. */
  msgGet: (stream: string): string => `$JS.API.STREAM.MSG.GET.${stream}`,
  /** Direct gets by sequence or `next_by_subj` (the request in the body). */
  directGet: (stream: string): string => `$JS.API.DIRECT.GET.${stream}`,
  /** Direct gets of a subject's last message, the subject in the API subject (KV `get`). */
  directGetLastBySubject: (stream: string): string => `$JS.API.DIRECT.GET.${stream}.>`,
  /** Consumer create, in both forms nats.js uses: named (with filter) and durable. */
  consumerCreate: (stream: string): string[] => [
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.*`,
  ],
  consumerInfo: (stream: string, consumer: string): string =>
    `$JS.API.CONSUMER.INFO.${stream}.${consumer}`,
  consumerDelete: (stream: string, consumer: string): string =>
    `$JS.API.CONSUMER.DELETE.${stream}.${consumer}`,
  consumerNames: (stream: string): string => `$JS.API.CONSUMER.NAMES.${stream}`,
  consumerList: (stream: string): string => `$JS.API.CONSUMER.LIST.${stream}`,
  /** Removes one message from a stream, by sequence. */
  msgDelete: (stream: string): string => `$JS.API.STREAM.MSG.DELETE.${stream}`,
  /** Pull requests of a pull consumer. */
  msgNext: (stream: string, consumer: string): string =>
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
  /** Acks, naks, in-progress and terms of a stream's deliveries. */
  ack: (stream: string): string => `$JS.ACK.${stream}.>`,
  /** Flow-control answers of a push consumer on a stream (KV watches are push consumers). */
  flowControl: (stream: string): string => `$JS.FC.${stream}.>`,
  /**
   * The same in the format a server uses with its `js_ack_fc_v2` feature flag (off by default
   * in 2.15): the consumer's JetStream domain and account hash come first.
   */
  flowControlV2: (domain: string, stream: string): string => `$JS.FC.${domain}.*.${stream}.>`,
} as const;

/**
 * Reading a key-value bucket: every read path nats.js takes, all read-only on the same data.
 * `Kvm.open` binds without looking at the stream, so `get` is a `STREAM.MSG.GET`; a bucket opened
 * knowing it allows direct gets reads with `DIRECT.GET`; `Kvm.create` and `status` read the info.
 */
function kvRead(bucket: string): string[] {
  const stream = kvStreamName(bucket);
  return [
    jsApi.streamInfo(stream),
    jsApi.msgGet(stream),
    jsApi.directGet(stream),
    jsApi.directGetLastBySubject(stream),
  ];
}

/**
 * A KV watch (and `keys`): an ordered push consumer, created, looked at, flow-controlled, and
 * deleted.
 */
function kvWatch(bucket: string): string[] {
  const stream = kvStreamName(bucket);
  return [
    ...jsApi.consumerCreate(stream),
    jsApi.consumerInfo(stream, ANY),
    jsApi.consumerDelete(stream, ANY),
    jsApi.flowControl(stream),
  ];
}

/** Puts, creates, compare-and-set updates and deletes of a bucket's keys. */
function kvWrite(bucket: string): string {
  return `$KV.${bucket}.>`;
}

/** Allowed and denied subjects of one direction; a deny wins over an allow. */
export interface SubjectRules {
  allow: readonly string[];
  deny?: readonly string[];
}

/** What a user may publish and subscribe to. */
export interface UserPermissions {
  publish: SubjectRules;
  subscribe: SubjectRules;
  /** May answer requests it received (services) without a publish grant on the reply subject. */
  allowResponses: boolean;
}

/** One NATS user of Vigil. */
export interface VigilUser {
  /** User name: the role, and for actor hosts `actor-host-<region>`. */
  name: string;
  role: Role;
  /** The region of a region-scoped role (actor hosts). */
  region?: string;
  account: NatsAccount;
  /** The user's own inbox prefix; it may subscribe to no other. */
  inboxPrefix: string;
  /** How it may connect: as a client, or (leaf users) as a leaf link. */
  connectionTypes: readonly ConnectionType[];
  permissions: UserPermissions;
}

/** The user name of `role` (per region for actor hosts, per site for edge gateways and leaves). */
export function userName(role: Role, scope?: string): string {
  if (role !== Role.ActorHost && role !== Role.EdgeGateway && role !== Role.Leaf) return role;
  if (scope === undefined) throw new TypeError(`a ${role} user needs a region or site`);
  return `${role}-${nameToken(scope, role === Role.ActorHost ? 'region' : 'edge site')}`;
}

/** The inbox prefix of `user`: distinct per user, so no user's subscription covers another's. */
export function inboxPrefixOf(user: string): string {
  return `_INBOX_${user}`;
}

/** The subscription that covers every inbox of a prefix. */
function inboxes(prefix: string): string {
  return `${prefix}.>`;
}

/** Finding a queued task: a direct get by subject (`next_by_subj`), nothing else of the stream. */
function queuedRequestsRead(region: string): string {
  return jsApi.directGet(assetNames.requestStream(region));
}

/**
 * Reading task events (`task-event-feed.ts`): an ordered consumer on the region's event stream,
 * looked up, created, pulled and removed; its deliveries come to the reader's own inbox.
 */
function eventRead(region: string): string[] {
  const events = assetNames.eventStream(region);
  return [
    jsApi.streamInfo(events),
    ...jsApi.consumerCreate(events),
    jsApi.consumerInfo(events, ANY),
    jsApi.msgNext(events, ANY),
    jsApi.consumerDelete(events, ANY),
  ];
}

function gatewayPermissions(regions: readonly string[], inboxPrefix: string): UserPermissions {
  return {
    publish: {
      allow: [
        jsApi.accountInfo,
        ...regions.flatMap((region) => [
          // Spill-over: a gateway submits to, and answers status for, every region.
          subjects.requestsOfRegion(region),
          queuedRequestsRead(region),
          // A model's queue depth (its consumer's pending count) decides when work spills over.
          jsApi.consumerInfo(assetNames.requestStream(region), ANY),
          ...kvRead(assetNames.taskBucket(region)),
          ...kvRead(assetNames.actorBucket(region)),
          ...kvWatch(assetNames.actorBucket(region)),
          // Task event streams, read from any region (a client resumes wherever it reconnects).
          ...eventRead(region),
          // Cancels of the tenants' own tasks (checked by the gateway), and an abandoned
          // stream's pending cancel withdrawn when its reader resumes.
          ...kvRead(assetNames.cancelBucket(region)),
          kvWrite(assetNames.cancelBucket(region)),
        ]),
        ...kvRead(assetNames.modelBucket),
        ...kvWatch(assetNames.modelBucket),
        ...kvRead(assetNames.quotaBucket),
        kvWrite(assetNames.quotaBucket),
        // OpenAI requests left running past the sync wait, found again by a client's retry.
        ...kvRead(assetNames.clientRetryBucket),
        kvWrite(assetNames.clientRetryBucket),
        // Route overrides the controller writes (`route.<model>`), honoured by the router.
        ...kvRead(assetNames.controlBucket),
        ...kvWatch(assetNames.controlBucket),
      ],
      // A gateway that could write task records or dead letters could forge results; those
      // admin routes use a second connection as the admin user.
      deny: [
        ...regions.map((region) => kvWrite(assetNames.taskBucket(region))),
        subjects.deadLettersOfRegion(ANY),
      ],
    },
    subscribe: {
      allow: [inboxes(inboxPrefix), subjects.repliesOfGateway(ANY)],
    },
    allowResponses: false,
  };
}

/** A grant on the local JetStream API, addressed to JetStream domain `domain` instead. */
function inDomain(domain: string, subject: string): string {
  const local = '$JS.API.';
  return subject.startsWith(local) ? `$JS.${domain}.API.${subject.slice(local.length)}` : subject;
}

/** The same grant, addressed to the hub's JetStream API from a leaf node in another domain. */
function viaHubDomain(subject: string): string {
  return inDomain(HUB_DOMAIN, subject);
}

function edgeGatewayPermissions(
  site: string,
  regions: readonly string[],
  inboxPrefix: string,
): UserPermissions {
  const hub = gatewayPermissions(regions, inboxPrefix);
  const held = assetNames.edgeStream(site);
  return {
    publish: {
      allow: [
        ...hub.publish.allow.map(viaHubDomain),
        // Its own site: accept into the site's stream, and find a request still held there.
        jsApi.accountInfo,
        subjects.edgeRequestsOfSite(site),
        jsApi.streamInfo(held),
        jsApi.directGet(held),
      ],
      deny: (hub.publish.deny ?? []).map(viaHubDomain),
    },
    subscribe: hub.subscribe,
    allowResponses: false,
  };
}

/**
 * Where the hub's request stream receives what it sources from an edge site: deliveries and idle
 * heartbeats of the source consumer, on `$JS.S.<random>` (nats-server names it per source).
 */
const SOURCE_DELIVERIES = '$JS.S.>';

/**
 * Where the hub receives answers to its own JetStream requests, `$JSC.R.<random>`: here, the
 * site's answers when the hub creates or deletes the consumer it sources through.
 */
const SERVER_REPLIES = '$JSC.R.>';

/**
 * An edge site's leaf link, as its hub sees it (found by tracing a site's link at work, the
 * edge-site tests). Into the hub: what the site's gateway asks of the hub's domain (the
 * gateway's grants, as the site's `edge-gateway` user has them) and what the hub's sourcing
 * of the site's stream needs back. Out to the site: the site gateway's inbox, the reply
 * subjects (which the site's gateway waits on), and the sourcing requests for its stream.
 */
function leafPermissions(site: string, regions: readonly string[]): UserPermissions {
  const gatewayInbox = inboxPrefixOf(userName(Role.EdgeGateway, site));
  const gateway = gatewayPermissions(regions, gatewayInbox);
  const held = assetNames.edgeStream(site);
  const domain = edgeDomain(site);
  return {
    publish: {
      allow: [...gateway.publish.allow.map(viaHubDomain), SOURCE_DELIVERIES, SERVER_REPLIES],
      // Denied although no allow covers them, so that a wider grant later cannot open them: a
      // forged reply is what a waiting caller is answered, commands drive actor hosts.
      deny: [
        ...(gateway.publish.deny ?? []).map(viaHubDomain),
        subjects.allReplies,
        subjects.allCommands,
      ],
    },
    subscribe: {
      allow: [
        inboxes(gatewayInbox),
        subjects.repliesOfGateway(ANY),
        ...jsApi.consumerCreate(held).map((s) => inDomain(domain, s)),
        inDomain(domain, jsApi.consumerDelete(held, ANY)),
        jsApi.flowControl(held),
        jsApi.flowControlV2(domain, held),
      ],
    },
    allowResponses: false,
  };
}

/**
 * What an actor needs to work a region's queue: pull and ack its models' consumers (created or
 * updated at start), write the task records, dead letters and task events of that region.
 */
function queueWork(region: string): string[] {
  const requests = assetNames.requestStream(region);
  return [
    jsApi.consumerInfo(requests, ANY),
    ...jsApi.consumerCreate(requests),
    jsApi.msgNext(requests, ANY),
    jsApi.ack(requests),
    ...kvRead(assetNames.taskBucket(region)),
    kvWrite(assetNames.taskBucket(region)),
    subjects.deadLettersOfRegion(region),
    subjects.eventsOfTenant(region, ANY),
    // The event retention, read at start: a task's events are kept until its deadline plus it.
    jsApi.streamInfo(assetNames.eventStream(region)),
    // Cancels, watched: the running task is aborted, a queued one ended.
    ...kvRead(assetNames.cancelBucket(region)),
    ...kvWatch(assetNames.cancelBucket(region)),
  ];
}

/**
 * What the unserved-request sweep (`actors/unserved-requests.ts`) needs of its region's queue
 * beyond queue work: how much the stream and its consumers hold, which subjects it holds, a
 * queued request's bytes, and the removal of one it ended.
 */
function unservedSweep(region: string): string[] {
  const requests = assetNames.requestStream(region);
  return [
    jsApi.streamInfo(requests),
    jsApi.consumerList(requests),
    jsApi.directGet(requests),
    jsApi.msgDelete(requests),
  ];
}

/**
 * An actor host works its own region's queues, and takes over those of `rescueRegions` while they
 * have no actors (`nodes/actor-host/backlog-rescue.ts`), for which it watches their heartbeats.
 */
function actorHostPermissions(
  region: string,
  rescueRegions: readonly string[],
  inboxPrefix: string,
): UserPermissions {
  return {
    publish: {
      allow: [
        jsApi.accountInfo,
        ...queueWork(region),
        ...unservedSweep(region),
        ...kvRead(assetNames.actorBucket(region)),
        kvWrite(assetNames.actorBucket(region)),
        ...rescueRegions.flatMap((other) => [
          ...queueWork(other),
          ...kvRead(assetNames.actorBucket(other)),
          ...kvWatch(assetNames.actorBucket(other)),
        ]),
        // Final records go straight to the waiting gateway or service.
        subjects.repliesOfGateway(ANY),
      ],
    },
    subscribe: {
      allow: [
        inboxes(inboxPrefix),
        SERVICE_DISCOVERY,
        subjects.servicesOfRegion(region),
        // The controller's recovery commands: restart a model's executor, drain.
        subjects.commandsOfRegion(region),
      ],
    },
    // Answers `$SRV.PING/INFO/STATS`, status requests and commands on the asker's own inbox.
    allowResponses: true,
  };
}

function controllerPermissions(regions: readonly string[], inboxPrefix: string): UserPermissions {
  return {
    publish: {
      allow: [
        jsApi.accountInfo,
        // Read-only JetStream state of everything: names, configs, counts, consumer positions.
        jsApi.streamNames,
        jsApi.streamList,
        jsApi.streamInfo(ANY),
        jsApi.consumerNames(ANY),
        jsApi.consumerList(ANY),
        jsApi.consumerInfo(ANY, ANY),
        ...regions.flatMap((region) => [
          ...kvRead(assetNames.actorBucket(region)),
          ...kvWatch(assetNames.actorBucket(region)),
        ]),
        ...kvRead(assetNames.modelBucket),
        ...kvWatch(assetNames.modelBucket),
        kvWrite(assetNames.modelBucket),
        ...kvRead(assetNames.controlBucket),
        ...kvWatch(assetNames.controlBucket),
        kvWrite(assetNames.controlBucket),
        subjects.allAlerts,
        subjects.allCommands,
        subjects.allActionLogs,
        SERVICE_DISCOVERY,
      ],
    },
    subscribe: { allow: [inboxes(inboxPrefix)] },
    allowResponses: false,
  };
}

function servicePermissions(regions: readonly string[], inboxPrefix: string): UserPermissions {
  return {
    publish: {
      allow: [
        jsApi.accountInfo,
        ...regions.flatMap((region) => [
          subjects.requestsOfRegion(region),
          queuedRequestsRead(region),
          ...kvRead(assetNames.taskBucket(region)),
          ...eventRead(region),
        ]),
      ],
      // Services observe and submit; every bucket is written by someone else.
      deny: ['$KV.>'],
    },
    subscribe: {
      allow: [
        inboxes(inboxPrefix),
        subjects.eventsOfTenant(ANY, ANY),
        subjects.repliesOfGateway(ANY),
      ],
    },
    allowResponses: false,
  };
}

function adminPermissions(inboxPrefix: string, otherInboxPrefixes: string[]): UserPermissions {
  return {
    publish: { allow: ['>'] },
    subscribe: {
      allow: ['>'],
      // Even the operator does not read the replies to other users' requests.
      deny: otherInboxPrefixes.filter((p) => p !== inboxPrefix).map(inboxes),
    },
    allowResponses: false,
  };
}

function sysPermissions(inboxPrefix: string): UserPermissions {
  return {
    publish: { allow: ['$SYS.REQ.>'] },
    subscribe: { allow: [inboxes(inboxPrefix), '$SYS.>'] },
    allowResponses: false,
  };
}

/**
 * Every Vigil user for the given regions and edge sites: one per role, one actor-host user per
 * region, and per edge site an edge-gateway user and the leaf user of its link.
 * @throws ValidationError when a region or site is not a name token.
 */
export function vigilUsers(
  regions: readonly string[],
  edgeSites: readonly string[] = [],
): VigilUser[] {
  for (const region of regions) nameToken(region, 'region');
  for (const site of edgeSites) nameToken(site, 'edge site');
  const unique = [...new Set(regions)];
  const base = (role: Role, account: NatsAccount, region?: string) => {
    const name = userName(role, region);
    return {
      name,
      role,
      ...(region === undefined ? {} : { region }),
      account,
      inboxPrefix: inboxPrefixOf(name),
      connectionTypes: [ConnectionType.Client],
    };
  };
  const gateway = base(Role.Gateway, NatsAccount.App);
  const hosts = unique.map((region) => base(Role.ActorHost, NatsAccount.App, region));
  const controller = base(Role.Controller, NatsAccount.App);
  const service = base(Role.Service, NatsAccount.App);
  const admin = base(Role.Admin, NatsAccount.App);
  const sys = base(Role.Sys, NatsAccount.System);
  const sites = [...new Set(edgeSites)].map((site) => ({
    ...base(Role.EdgeGateway, NatsAccount.App, site),
    site,
  }));
  const leaves = [...new Set(edgeSites)].map((site) => ({
    ...base(Role.Leaf, NatsAccount.App, site),
    connectionTypes: [ConnectionType.Leaf],
    site,
  }));
  const appPrefixes = [gateway, ...hosts, ...sites, controller, service, admin].map(
    (u) => u.inboxPrefix,
  );
  return [
    { ...gateway, permissions: gatewayPermissions(unique, gateway.inboxPrefix) },
    ...hosts.map((host) => ({
      ...host,
      permissions: actorHostPermissions(
        host.region!,
        unique.filter((other) => other !== host.region),
        host.inboxPrefix,
      ),
    })),
    ...sites.map(({ site, ...user }) => ({
      ...user,
      permissions: edgeGatewayPermissions(site, unique, user.inboxPrefix),
    })),
    ...leaves.map(({ site, ...user }) => ({
      ...user,
      permissions: leafPermissions(site, unique),
    })),
    { ...controller, permissions: controllerPermissions(unique, controller.inboxPrefix) },
    { ...service, permissions: servicePermissions(unique, service.inboxPrefix) },
    { ...admin, permissions: adminPermissions(admin.inboxPrefix, appPrefixes) },
    { ...sys, permissions: sysPermissions(sys.inboxPrefix) },
  ];
}
