import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import { create } from "@bufbuild/protobuf";
import { AckPolicy, consumerNames, DeliverPolicy, encodeClickBatch, isNotFound, PULL_EXPIRES_MS, type Bus, type Click } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { archivedClicks, archivedThrough } from "@recsys/lake/lake";
import { applyClickMessages, clickDurables } from "./consumer.js";
import { keyPrefix, type CovisitStore } from "./redis-store.js";

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

export class ArchiveGapError extends Error {}

/**
 * Where CLICKS begins now, and, when its retention dropped its first messages, that the archive (services/archive) holds them: the
 * same stream (created at the same time) through the message before the first one kept. Throws ArchiveGapError otherwise.
 */
export async function archiveCoverage(bus: Bus, archiveDir: string): Promise<{ firstSeq: number }> {
  const stream = bus.topology.clicksStream;
  const info = await bus.jsm.streams.info(stream);
  const firstSeq = info.state.messages === 0 ? info.state.last_seq + 1 : info.state.first_seq;
  if (firstSeq <= 1) return { firstSeq: 1 };
  const held = await archivedThrough(archiveDir, "clicks");
  const gap = (why: string) =>
    new ArchiveGapError(`${stream} begins at sequence ${firstSeq} and ${why}: the clicks before it are in neither; nothing was deleted`);
  if (!held) throw gap(`the archive in ${archiveDir} holds none of it`);
  if (held.streamCreated !== info.created)
    throw gap(`the archive in ${archiveDir} holds another stream (created ${held.streamCreated}, this one ${info.created})`);
  if (held.through < firstSeq - 1) throw gap(`the archive in ${archiveDir} holds it only through sequence ${held.through}`);
  return { firstSeq };
}

/**
 * After prepareRebuild: applies the archived clicks of the messages before `beforeSeq`, message by message in stream order as the
 * consumer would, then creates covisit's durables to start at `beforeSeq`, so that covisit goes on from the stream. Returns the
 * clicks applied.
 */
export async function applyArchivedClicks(opts: {
  bus: Bus;
  store: CovisitStore;
  archiveDir: string;
  beforeSeq: number;
  partitions: number;
  maxBatch: number;
  isVisit: (event: string) => boolean;
}): Promise<number> {
  const { bus, store } = opts;
  await store.markFirstClick();
  let applied = 0;
  for await (const rows of archivedClicks(opts.archiveDir, 1, opts.beforeSeq)) {
    const bySeq = new Map<number, Click[]>();
    for (const r of rows) {
      let clicks = bySeq.get(r.streamSeq);
      if (!clicks) bySeq.set(r.streamSeq, (clicks = []));
      clicks.push(
        create(ClickSchema, {
          eventId: r.eventId,
          userid: r.userid,
          url: r.url,
          event: r.event,
          eventTimeMs: BigInt(r.eventTimeMs),
          ingestTimeMs: BigInt(r.ingestTimeMs),
        }),
      );
    }
    const verdicts = await applyClickMessages(
      [...bySeq.values()].map((clicks) => encodeClickBatch(clicks)),
      store,
      opts.maxBatch,
      opts.isVisit,
    );
    for (const v of verdicts) if (!("error" in v)) applied += v.verdicts.filter((x) => x.status === "applied").length;
  }
  for (const { durable, filterSubject } of clickDurables(bus, opts.partitions)) {
    await bus.jsm.consumers.add(bus.topology.clicksStream, {
      durable_name: durable,
      filter_subject: filterSubject,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: opts.beforeSeq,
    });
  }
  return applied;
}
