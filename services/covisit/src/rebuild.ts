import type { Redis } from "ioredis";
import { JetStreamApiError, PULL_EXPIRES_MS, type Bus } from "@recsys/bus";
import { DURABLE } from "./consumer.js";
import { keyPrefix } from "./redis-store.js";

export class CovisitRunningError extends Error {}

/**
 * Prepares a rebuild of every count from the CLICKS stream after Redis lost its data: deletes
 * what is left of the namespace's keys and the durable consumer, so that the next covisit to start
 * creates it again and applies the whole stream from its first click, in stream order, as the
 * first time. covisit must be stopped: a running one would apply new clicks before the old ones
 * of the same user, which would then count as late. A running covisit always has a pull request
 * waiting; a stopped or crashed one's last requests expire within PULL_EXPIRES_MS. Refuses when
 * pulls are still waiting after `waitMs`. (Unacked messages prove nothing: a crashed consumer's
 * stay unacked until the next one pulls them.)
 */
export async function prepareRebuild(opts: { bus: Bus; redis: Redis; namespace: string; waitMs?: number }): Promise<{ keysDeleted: number; messages: number }> {
  const { bus, redis } = opts;
  const stream = bus.topology.clicksStream;
  const consumerInfo = () =>
    bus.jsm.consumers.info(stream, DURABLE).catch((err: unknown) => {
      if (err instanceof JetStreamApiError && err.status === 404) return undefined;
      throw err;
    });
  let consumer = await consumerInfo();
  const deadline = Date.now() + (opts.waitMs ?? 2 * PULL_EXPIRES_MS);
  while (consumer && consumer.num_waiting > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    consumer = await consumerInfo();
  }
  if (consumer && consumer.num_waiting > 0) {
    throw new CovisitRunningError(`covisit is consuming ${stream} (${consumer.num_waiting} pulls waiting): stop every covisit first`);
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
  return { keysDeleted, messages: info.state.messages };
}
