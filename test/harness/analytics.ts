import { create } from "@bufbuild/protobuf";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { type Click, encodeClickBatch, Topology } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { ClickMetricsBatchSchema } from "@recsys/contracts/events/v1/click_metrics";
import { fromBinary } from "@bufbuild/protobuf";
import pg from "pg";
import type { RawClick } from "./reference.js";
import type { TestStack } from "./stack.js";
import { clientsOf } from "./clients.js";
import { clicksLastSequence } from "./oracle.js";
import { expect } from "vitest";
import { machine, natsOf } from "./stack.js";

/** A reference click with the event type, properties and id the fixture gives it. */
export interface TypedClick {
  eventId: string;
  userid: string;
  url: string;
  eventTimeMs: number;
  event: string;
}

const EVENTS = ["view", "view", "view", "click", "add_to_cart", "purchase", "share"];

/**
 * The reference clicks with event types and properties added deterministically: the type from the click's place in the file
 * (most are views, as in a shop), "" (a view, as clients that send no type) for every 11th, an id per place.
 */
export function typedReferenceClicks(clicks: RawClick[]): Array<TypedClick & { raw: Click }> {
  return clicks.map((c, i) => {
    const event = i % 11 === 0 ? "" : EVENTS[(i * 7 + c.userid.charCodeAt(0)) % EVENTS.length]!;
    const eventTimeMs = Date.parse(c.event_time);
    const raw = create(ClickSchema, {
      eventId: `ref-${i}`,
      userid: c.userid,
      url: c.url,
      eventTimeMs: BigInt(eventTimeMs),
      ingestTimeMs: BigInt(eventTimeMs),
      event,
      properties: { position: { kind: { case: "number", value: i % 10 } }, referrer: { kind: { case: "text", value: `https://r.example/${i % 5}` } } },
    });
    return { eventId: raw.eventId, userid: c.userid, url: c.url, eventTimeMs, event: event || "view", raw };
  });
}

/** Publishes clicks straight to CLICKS, `perMessage` to a ClickBatch, on the partitions in turn; `label` keeps message ids apart. */
export async function publishClicks(stack: TestStack, clicks: Click[], label: string, perMessage = 100): Promise<number> {
  const nc = await connect({ servers: natsOf(stack) });
  try {
    const js = jetstream(nc);
    const topology = new Topology(stack.namespace);
    let messages = 0;
    for (let k = 0; k * perMessage < clicks.length; k++) {
      const batch = encodeClickBatch(clicks.slice(k * perMessage, (k + 1) * perMessage));
      await js.publish(topology.clicksSubject(k % 8), batch.data, { headers: batch.headers, msgID: `${label}-${k}` });
      messages++;
    }
    return messages;
  } finally {
    await nc.close();
  }
}

export const rowKey = (startMs: number, userid: string, event: string, url: string, count: number) => `${startMs}|${userid}|${event}|${url}|${count}`;

/**
 * The oracle: Flink's hop-window query in PostgreSQL over the same clicks,
 *   select window_start, window_end, user_id, event, url, count(1) as event_count
 *   from table(hop(table clickstream, descriptor(timestamp), interval '10' seconds, interval '5' minutes))
 *   group by window_start, window_end, user_id, event, url
 * with each click in every window whose start is a multiple of the slide (since the epoch) within the size before it.
 */
export async function oracleRows(clicks: TypedClick[], slideSeconds = 10, sizeSeconds = 300): Promise<string[]> {
  const client = new pg.Client({ connectionString: machine.postgres });
  await client.connect();
  try {
    await client.query("CREATE TEMP TABLE clickstream (user_id text, event text, url text, ts timestamptz)");
    await client.query(
      `INSERT INTO clickstream SELECT c.userid, c.event, c.url, timestamptz 'epoch' + (c.t * interval '1 millisecond')
       FROM jsonb_to_recordset($1::jsonb) AS c(userid text, event text, url text, t bigint)`,
      [JSON.stringify(clicks.map((c) => ({ userid: c.userid, event: c.event, url: c.url, t: c.eventTimeMs })))],
    );
    const { rows } = await client.query<{ start_ms: string; user_id: string; event: string; url: string; event_count: string }>(
      `SELECT (extract(epoch FROM window_start) * 1000)::bigint AS start_ms, user_id, event, url, count(1) AS event_count
       FROM clickstream,
         generate_series(date_bin($1 * interval '1 second', ts, timestamptz 'epoch') - ($2 - $1) * interval '1 second',
                         date_bin($1 * interval '1 second', ts, timestamptz 'epoch'), $1 * interval '1 second') AS window_start
       GROUP BY window_start, user_id, event, url`,
      [slideSeconds, sizeSeconds],
    );
    return rows.map((r) => rowKey(Number(r.start_ms), r.user_id, r.event, r.url, Number(r.event_count)));
  } finally {
    await client.end();
  }
}

/** Every row on the stack's CLICK_METRICS stream, as a consumer of the stream reads them (window end checked against the size). */
export async function streamRows(stack: TestStack, sizeMs = 300_000): Promise<{ rows: string[]; messages: number; badEnds: number }> {
  const nc = await connect({ servers: natsOf(stack) });
  try {
    const stream = new Topology(stack.namespace).clickMetricsStream;
    const total = (await (await jetstreamManager(nc)).streams.info(stream)).state.messages;
    const consumer = await jetstream(nc).consumers.get(stream);
    const rows: string[] = [];
    let messages = 0;
    let badEnds = 0;
    while (messages < total) {
      for await (const m of await consumer.fetch({ max_messages: 500, expires: 2_000 })) {
        const b = fromBinary(ClickMetricsBatchSchema, m.data);
        if (b.windowEndMs - b.windowStartMs !== BigInt(sizeMs)) badEnds++;
        for (const r of b.rows) rows.push(rowKey(Number(b.windowStartMs), r.userid, r.event, r.url, Number(r.eventCount)));
        messages++;
      }
    }
    return { rows, messages, badEnds };
  } finally {
    await nc.close();
  }
}

/** What differs between the rows a consumer of the stream got and the oracle's: missing, extra, and rows received more than once. */
export function compareRows(got: string[], want: string[]) {
  const wanted = new Set(want);
  const seen = new Set<string>();
  const extra: string[] = [];
  let repeated = 0;
  for (const r of got) {
    if (seen.has(r)) repeated++;
    seen.add(r);
    if (!wanted.has(r)) extra.push(r);
  }
  const missing = want.filter((r) => !seen.has(r));
  return { missing: missing.length, extra: extra.length, repeated, examples: [...missing.slice(0, 3), ...extra.slice(0, 3)] };
}

/** Waits until every click in CLICKS is applied, every window emitted (the stream idle) and published; returns the progress then. */
export async function waitAllEmitted(stack: TestStack, timeoutMs = 120_000) {
  const last = await clicksLastSequence(stack);
  let progress: Awaited<ReturnType<ReturnType<typeof clientsOf>["analytics"]["progress"]>> | undefined;
  await expect
    .poll(
      async () => {
        progress = await clientsOf(stack).analytics.progress({});
        const p = progress;
        return (
          p.ackFloorStreamSequence >= last &&
          p.emittedBefore !== "" &&
          Date.parse(p.emittedBefore) > Date.parse(p.watermark) &&
          p.publishedBefore === p.emittedBefore
        );
      },
      { timeout: timeoutMs, interval: 250 },
    )
    .toBe(true);
  return progress!;
}
