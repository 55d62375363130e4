import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import { consumerNames, isNotFound, PULL_EXPIRES_MS, type Bus } from "@recsys/bus";
import { keyPrefix } from "./redis-store.js";

export class CovisitRunningError extends Error {}

/**
 * Deletes the namespace's remaining keys and covisit's durables, so the next covisit applies the whole CLICKS stream as the first time.
 * Refuses while a pull still waits after `waitMs`: a running covisit always has one (unacked messages prove nothing after a crash).
 */
export async function prepareRebuild(opts: { bus: Bus; redis: Redis; namespace: string; waitMs?: number }): Promise<{ keysDeleted: number; messages: number }> {
  const { bus, redis } = opts;
  const stream = bus.topology.clicksStream;
  // Every durable covisit consumes with: one per partition, or the single one of earlier versions.
  const { durable } = consumerNames("covisit", "clicks");
  const ours = (name: string) => name === durable || name.startsWith(`${durable}-p`);
  const consumerInfos = async () => {
    try {
      return (await bus.jsm.consumers.list(stream).next()).filter((c) => ours(c.name));
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  };
  const waiting = (cs: Array<{ num_waiting: number }>) => cs.reduce((n, c) => n + c.num_waiting, 0);
  let consumers = await consumerInfos();
  const deadline = Date.now() + (opts.waitMs ?? 2 * PULL_EXPIRES_MS);
  while (waiting(consumers) > 0 && Date.now() < deadline) {
    await sleep(250);
    consumers = await consumerInfos();
  }
  if (waiting(consumers) > 0) {
    throw new CovisitRunningError(`covisit is consuming ${stream} (${waiting(consumers)} pulls waiting): stop every covisit first`);
  }
  let keysDeleted = 0;
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${keyPrefix(opts.namespace)}*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) keysDeleted += await redis.unlink(...keys);
  } while (cursor !== "0");
  for (const c of consumers) await bus.jsm.consumers.delete(stream, c.name);
  const info = await bus.jsm.streams.info(stream).catch(() => undefined);
  return { keysDeleted, messages: info?.state.messages ?? 0 };
}
