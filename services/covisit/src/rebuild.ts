import { consumerNames, idleConsumers, isNotFound, type Bus } from "@recsys/bus";
import { applyArchivedHead, durablesStartingAt } from "@recsys/lake/lake";
import { applyClickMessages, clickDurables } from "./consumer.js";
import { deleteMatching, keyPrefix, type CovisitStore, type RedisClient } from "./redis-store.js";
import { visibilityConsumer } from "./visibility-consumer.js";

/**
 * Deletes the namespace's remaining keys and covisit's durables, so the next covisit applies the whole CLICKS stream as the first time,
 * and reads the whole compacted VISIBILITY stream (every url's latest state) before it serves.
 * Refuses (ConsumerRunningError) while a pull still waits after `waitMs`: a running covisit always has one (unacked messages prove
 * nothing after a crash).
 */
export async function prepareRebuild(opts: {
  bus: Bus;
  redis: RedisClient;
  namespace: string;
  waitMs?: number;
}): Promise<{ keysDeleted: number; messages: number }> {
  const { bus, redis } = opts;
  const stream = bus.topology.clicksStream;
  // Every durable covisit consumes with: one per partition, or the single one of earlier versions.
  const { durable } = consumerNames("covisit", "clicks");
  const consumers = await idleConsumers(bus, stream, (name) => name === durable || name.startsWith(`${durable}-p`), "covisit", opts.waitMs);
  // The hidden pages go with the keys: a new VISIBILITY durable starts from the stream's first message. Deleted first, so that no
  // failure between the two leaves a durable past states Redis no longer holds.
  await bus.jsm.consumers.delete(bus.topology.visibilityStream, visibilityConsumer.durable).catch((err: unknown) => {
    if (!isNotFound(err)) throw err;
  });
  const keysDeleted = await deleteMatching(redis, `${keyPrefix(opts.namespace)}*`);
  for (const c of consumers) await bus.jsm.consumers.delete(stream, c.name);
  const info = await bus.jsm.streams.info(stream).catch(() => undefined);
  return { keysDeleted, messages: info?.state.messages ?? 0 };
}

/**
 * After prepareRebuild: applies the archived clicks and erasures (UserDeleted) of the messages the stream no longer holds and of
 * every later one the archive holds, message by message in stream order with their sequences, as the consumer does
 * (applyClickMessages), then creates covisit's durables to start after them, so that covisit goes on from the stream
 * (applyArchivedHead). Returns the clicks applied and the sequence the durables start at (1, with none made, when the stream holds
 * its first message).
 */
export async function applyArchivedClicks(opts: {
  bus: Bus;
  store: CovisitStore;
  archiveDir: string;
  partitions: number;
  maxBatch: number;
  isVisit: (event: string) => boolean;
}): Promise<{ applied: number; beforeSeq: number }> {
  const { bus, store } = opts;
  await store.markFirstClick();
  let applied = 0;
  const beforeSeq = await applyArchivedHead({
    bus,
    dir: opts.archiveDir,
    apply: async (messages) => {
      const verdicts = await applyClickMessages(messages, store, opts.maxBatch, opts.isVisit);
      for (const v of verdicts) if (!("error" in v)) applied += v.verdicts.filter((x) => x.status === "applied").length;
    },
    startAt: durablesStartingAt(bus, clickDurables(bus, opts.partitions)),
  });
  return { applied, beforeSeq };
}
