import type { Redis } from "ioredis";
import { JetStreamApiError, type Bus } from "@recsys/bus";
import { DURABLE } from "./consumer.js";
import { keyPrefix } from "./redis-store.js";

export class CovisitRunningError extends Error {}

/**
 * Prepares a rebuild of every count from the CLICKS stream after Redis lost its data: deletes
 * what is left of the namespace's keys and the durable consumer, so that the next covisit to start
 * creates it again and applies the whole stream from its first click, in stream order, as the
 * first time. covisit must be stopped: a running one would apply new clicks before the old ones
 * of the same user, which would then count as late. Refuses when it sees one pulling.
 */
export async function prepareRebuild(opts: { bus: Bus; redis: Redis; namespace: string }): Promise<{ keysDeleted: number; clicks: number }> {
  const { bus, redis } = opts;
  const stream = bus.topology.clicksStream;
  const consumer = await bus.jsm.consumers.info(stream, DURABLE).catch((err: unknown) => {
    if (err instanceof JetStreamApiError && err.status === 404) return undefined;
    throw err;
  });
  if (consumer && (consumer.num_waiting > 0 || consumer.num_ack_pending > 0)) {
    throw new CovisitRunningError(`covisit is consuming ${stream} (${consumer.num_waiting} pulls waiting, ${consumer.num_ack_pending} unacked): stop every covisit first`);
  }
  let keysDeleted = 0;
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${keyPrefix(opts.namespace)}*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) keysDeleted += await redis.unlink(...keys);
  } while (cursor !== "0");
  if (consumer) await bus.jsm.consumers.delete(stream, DURABLE);
  const info = await bus.jsm.streams.info(stream);
  return { keysDeleted, clicks: info.state.messages };
}
