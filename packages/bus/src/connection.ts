import { setTimeout as sleep } from "node:timers/promises";
import pRetry from "p-retry";
import { connect, headers, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JetStreamPublishOptions, type PubAck } from "@nats-io/jetstream";
import type { Logger } from "@recsys/logging";
import { publishedMessages } from "@recsys/metrics";
import { injectInto } from "@recsys/tracing";
import { isTransientJetStreamError } from "./jetstream-errors.js";
import { ensureStreams, StreamsMissingError, Topology, type StreamLimits } from "./topology.js";

export interface Bus {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  topology: Topology;
  /** How long a delivered message may go unacked before JetStream redelivers it. */
  ackWaitMs: number;
  /** Publishes and counts the message in `recsys_published_messages_total` once JetStream stored it. */
  publish(subject: string, data: Uint8Array, opts?: Partial<JetStreamPublishOptions>): Promise<PubAck>;
  connected(): boolean;
  close(): Promise<void>;
}

export const DEFAULT_ACK_WAIT_MS = 30_000;

const utf8Bytes = (s: string) => Buffer.byteLength(s, "utf8");

/**
 * The bytes `Bus.publish` of this message takes in a stream, as JetStream's file store counts them (its stream info's `bytes`):
 * a 22-byte record header, the subject, the headers as sent (their length in 4 bytes, the message id and the trace context
 * `publish` adds included), the payload and an 8-byte checksum. Call it where the publish will run: the trace context is the
 * caller's.
 */
export function storedBytes(subject: string, payload: Uint8Array, opts: { msgID?: string; headers?: MsgHdrs } = {}): number {
  const h = headers();
  for (const key of opts.headers?.keys() ?? []) for (const v of opts.headers!.values(key)) h.append(key, v);
  if (opts.msgID) h.set("Nats-Msg-Id", opts.msgID);
  injectInto(h);
  let headerBytes = utf8Bytes("NATS/1.0\r\n\r\n");
  for (const key of h.keys()) for (const v of h.values(key)) headerBytes += utf8Bytes(`${key}: ${v}\r\n`);
  return 22 + utf8Bytes(subject) + 4 + headerBytes + payload.length + 8;
}

/** Connects for good: reconnects forever with backoff; callers watch `connected()` for health. */
/** Rejects with an error p-retry retries: it gives up at once on a TypeError (an invalid URL) or on a non-Error. */
const retriedAlways = (err: unknown) => Promise.reject(err instanceof Error && !(err instanceof TypeError) ? err : new Error(String(err), { cause: err }));

/** A NATS user and its password. */
export interface NatsAuth {
  user: string;
  pass: string;
}

/** The NATS user of the settings every service shares (see commonEnv): none when both are empty. */
export function natsAuthFrom(config: { NATS_USER: string; NATS_PASSWORD: string }): NatsAuth | undefined {
  if (!config.NATS_USER && !config.NATS_PASSWORD) return undefined;
  if (!config.NATS_USER || !config.NATS_PASSWORD)
    throw new Error(
      `invalid configuration: NATS_USER and NATS_PASSWORD are set together or not at all; only ${config.NATS_USER ? "NATS_USER" : "NATS_PASSWORD"} is set`,
    );
  return { user: config.NATS_USER, pass: config.NATS_PASSWORD };
}

/**
 * The inbox prefix of a user's replies: its own subjects, so that a user may subscribe to its
 * replies (and pulled messages) only, not to other services' (deploy/nats/nats.conf).
 */
export function inboxPrefixOf(user: string): string {
  return `_INBOX_${user}`;
}

/** The servers of a NATS_URL: one URL, or several of one cluster separated by commas. */
export function natsServers(url: string): string[] {
  const servers = url
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (servers.length === 0) throw new TypeError("NATS_URL: no server given");
  return servers;
}

export async function connectBus(opts: {
  /** NATS_URL: one server, or several of one cluster, comma-separated. */
  url: string;
  name: string;
  namespace: string;
  logger: Logger;
  /** The NATS user to connect as; none: a NATS without authentication. */
  auth?: NatsAuth;
  ackWaitMs?: number;
  limits?: StreamLimits;
}): Promise<Bus> {
  const conn = await pRetry(
    () =>
      connect({
        servers: natsServers(opts.url),
        name: opts.name,
        ...(opts.auth ? { user: opts.auth.user, pass: opts.auth.pass, inboxPrefix: inboxPrefixOf(opts.auth.user) } : {}),
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        pingInterval: 10_000,
        // Every publish is a request for its PubAck; with async traces on, each builds an Error
        // (a stack capture) in advance: 8% of covisit's CPU and 13% of ingest's in a replay profile.
        noAsyncTraces: true,
      }).catch(retriedAlways),
    {
      retries: Number.POSITIVE_INFINITY,
      // The wait grows linearly (200 ms more each attempt, at most 5 s), which p-retry's exponential
      // backoff cannot express: it is taken here, and p-retry adds none.
      minTimeout: 0,
      async onFailedAttempt({ error, attemptNumber }) {
        const waitMs = Math.min(5_000, 200 * attemptNumber);
        opts.logger.warn({ err: String(error), attempt: attemptNumber, waitMs }, "NATS not reachable, retrying");
        await sleep(waitMs);
      },
    },
  );
  let up = true;
  void (async () => {
    for await (const s of conn.status()) {
      if (s.type === "disconnect") up = false;
      if (s.type === "reconnect") up = true;
      if (s.type === "disconnect" || s.type === "reconnect") opts.logger.warn({ status: s.type }, "NATS connection");
    }
  })();
  const jsm = await jetstreamManager(conn);
  const topology = new Topology(opts.namespace, opts.limits);
  // Without the right to create streams, wait for ingest (or an admin) to create them; on a cluster still electing the leaders
  // of the streams (a start of many services at once, a server lost), ask again.
  await pRetry(() => ensureStreams(jsm, topology, opts.logger), {
    retries: Number.POSITIVE_INFINITY,
    minTimeout: 0,
    shouldRetry: ({ error }) => error instanceof StreamsMissingError || isTransientJetStreamError(error),
    async onFailedAttempt({ error, attemptNumber }) {
      if (error instanceof StreamsMissingError) opts.logger.warn({ streams: error.streams, attempt: attemptNumber }, `${error.message}: waiting for them`);
      else if (isTransientJetStreamError(error))
        opts.logger.warn({ err: String(error), attempt: attemptNumber }, "JetStream did not answer the streams' setup: asking again");
      else return;
      await sleep(Math.min(5_000, 500 * attemptNumber));
    },
  });
  const js = jetstream(conn);
  return {
    nc: conn,
    js,
    jsm,
    topology,
    ackWaitMs: opts.ackWaitMs ?? DEFAULT_ACK_WAIT_MS,
    async publish(subject, data, publishOpts) {
      const h = publishOpts?.headers ?? headers();
      injectInto(h);
      const ack = await js.publish(subject, data, { ...publishOpts, headers: h });
      publishedMessages.inc({ stream: ack.stream });
      return ack;
    },
    connected: () => up && !conn.isClosed(),
    close: () => conn.drain(),
  };
}
