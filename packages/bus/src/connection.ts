import { setTimeout as sleep } from "node:timers/promises";
import pRetry from "p-retry";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JetStreamPublishOptions, type PubAck } from "@nats-io/jetstream";
import type { Logger } from "@recsys/logging";
import { publishedMessages } from "@recsys/metrics";
import { injectInto } from "@recsys/tracing";
import { ensureStreams, Topology, type StreamLimits } from "./topology.js";

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

/** Connects for good: reconnects forever with backoff; callers watch `connected()` for health. */
/** Rejects with an error p-retry retries: it gives up at once on a TypeError (an invalid URL) or on a non-Error. */
const retriedAlways = (err: unknown) => Promise.reject(err instanceof Error && !(err instanceof TypeError) ? err : new Error(String(err), { cause: err }));

export async function connectBus(opts: {
  url: string;
  name: string;
  namespace: string;
  logger: Logger;
  ackWaitMs?: number;
  limits?: StreamLimits;
}): Promise<Bus> {
  const conn = await pRetry(
    () =>
      connect({
        servers: opts.url,
        name: opts.name,
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
  await ensureStreams(jsm, topology, opts.logger);
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
