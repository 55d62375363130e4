import { execFile } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { promisify } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { clientsOf, recommendationsFor } from "./harness/clients.js";
import { clicksLastSequence } from "./harness/oracle.js";
import { referenceCoVisits, type RawClick } from "./harness/reference.js";
import { natsOf, repoRoot, startStack, type TestStack } from "./harness/stack.js";

const run = promisify(execFile);
let stack: TestStack;
let c: ReturnType<typeof clientsOf>;
let nc: NatsConnection;

const T = Date.parse("2024-01-02T00:00:00Z");
const at = (minutes: number) => new Date(T + minutes * 60_000).toISOString();
const page = (name: string) => `https://e.org/${name}`;
// In the order sent. Each user's last click is more than the allowed lateness (5 min) behind the
// user's newest one, so covisit dead-letters it: late-a's x (10 min behind n), late-b's y (7 behind b).
// The clicks x pairs with (d, e, n) are within the history covisit keeps behind a user's newest
// click (the 10-minute window plus the lateness), so a replay can pair x with them.
const clicks: RawClick[] = [
  { userid: "late-a", url: page("d"), event_time: at(17) },
  { userid: "late-a", url: page("e"), event_time: at(19) },
  { userid: "late-a", url: page("n"), event_time: at(30) },
  { userid: "late-a", url: page("x"), event_time: at(20) },
  { userid: "late-b", url: page("b"), event_time: at(40) },
  { userid: "late-b", url: page("y"), event_time: at(33) },
];
const late = new Set([page("x"), page("y")]);
const urls = clicks.map((k) => k.url);

/** `pnpm dlq ...` against the test stack's namespace. */
async function dlq(...args: string[]) {
  return run(process.execPath, [join(repoRoot, "tools/dlq/dist/main.js"), ...args], { env: stack.env });
}
const dlqJson = async (...args: string[]) => JSON.parse((await dlq(...args, "--json")).stdout);

/** Every url's Recommendation, and what the reference SQL says for these clicks. */
async function recommendations() {
  return Object.fromEntries(await recommendationsFor(c.gateway, urls, 10));
}
async function reference(of: RawClick[]) {
  const ref = await referenceCoVisits(of);
  return Object.fromEntries(urls.map((u) => [u, ref.get(u) ?? []]));
}

async function waitCovisitApplied() {
  const last = await clicksLastSequence(stack);
  await vi.waitFor(async () => expect((await c.covisit.progress({})).ackFloorStreamSequence).toBeGreaterThanOrEqual(last), { timeout: 20_000, interval: 100 });
}
const lettersStored = async () => (await (await jetstreamManager(nc)).streams.info(`${stack.namespace.toUpperCase()}_DEAD_LETTERS`)).state.messages;

beforeAll(async () => {
  stack = await startStack("dlq");
  c = clientsOf(stack);
  nc = await connect({ servers: natsOf(stack) });
  for (const k of clicks) await c.gateway.clickstream({ event: { userid: k.userid, url: k.url, eventTime: k.event_time } });
  // And bytes that are no click: both CLICKS consumers (covisit, profile) dead-letter them as undecodable.
  await jetstream(nc).publish(`${stack.namespace}.clicks.0`, Uint8Array.of(0xff, 0xff, 0xff, 0x07), { msgID: "not-a-click" });
  await vi.waitFor(async () => expect(await lettersStored()).toBe(4), { timeout: 20_000, interval: 100 });
  await waitCovisitApplied();
});
afterAll(async () => {
  await nc?.close();
  await stack?.stop();
});

describe("pnpm dlq", () => {
  it("lists the dead letters with their cause and a count per cause; the late clicks are not counted yet", async () => {
    expect(await recommendations()).toEqual(await reference(clicks.filter((k) => !late.has(k.url))));

    const { stdout } = await dlq("list");
    const lines = stdout.trim().split("\n");
    expect(lines).toHaveLength(5);
    expect(lines.filter((l) => / late +clicks +\S+_CLICKS #\d+ item 0 +late: watermark /.test(l))).toHaveLength(2);
    expect(lines.filter((l) => / undecodable +(clicks|profile-clicks) +\S+_CLICKS #\d+ +undecodable: /.test(l))).toHaveLength(2);
    expect(lines[4]).toBe("4 dead letters: late 2, undecodable 2");

    const onlyLate = await dlqJson("list", "--cause", "late");
    expect(onlyLate.byCause).toEqual({ late: 2 });
    expect(onlyLate.letters.map((l: { reason: string }) => l.reason)).toEqual([
      "late: watermark 2024-01-02T00:30:00.000Z",
      "late: watermark 2024-01-02T00:40:00.000Z",
    ]);
    expect((await dlqJson("list", "--since", new Date(Date.now() + 60_000).toISOString())).letters).toEqual([]);
  });

  it("shows one letter: its headers and the click it holds", async () => {
    const [first] = (await dlqJson("list", "--cause", "late")).letters;
    const { stdout } = await dlq("show", String(first.sequence));
    expect(stdout).toContain("recsys-cause: late");
    expect(stdout).toContain(`recsys-source-subject: ${first.sourceSubject}`);
    expect(stdout).toContain("recsys.events.v1.Click");
    expect(stdout).toContain(`"userid": "late-a"`);
    expect(stdout).toContain(`"url": "${page("x")}"`);
  });

  it("replays the late clicks after the fix: they count, exactly once however often replayed, and the letters stay", async () => {
    const before = await clicksLastSequence(stack);
    const dry = await dlqJson("replay", "--cause", "late", "--dry-run");
    expect(dry.counts).toMatchObject({ "dry-run": 2, replayed: 0 });
    expect(await clicksLastSequence(stack)).toBe(before);

    // The fix: covisit waits an hour for late clicks.
    const covisit = stack.process("covisit")!;
    covisit.kill("SIGTERM");
    await once(covisit, "exit");
    await stack.start("covisit", { ALLOWED_LATENESS_MS: String(60 * 60_000) });

    const replayed = await dlqJson("replay", "--cause", "late");
    expect(replayed.counts).toEqual({ replayed: 2, duplicate: 0, "dry-run": 0, unreplayable: 0 });
    await waitCovisitApplied();
    const everyClick = await reference(clicks);
    expect(await recommendations()).toEqual(everyClick);
    expect(everyClick[page("x")]).toEqual([{ recommendation: page("n"), frequency: 1 }]);

    const again = await dlq("replay", "--cause", "late");
    expect(again.stdout.trim().split("\n").at(-1)).toMatch(/^replayed 0, dropped as repeats 2, cannot replay 0; the letters stay in /);
    await waitCovisitApplied();
    expect(await recommendations()).toEqual(everyClick);
    expect((await dlqJson("list")).byCause).toEqual({ late: 2, undecodable: 2 });
  });

  it("replays a letter from before letters named their cause and subject to its source message's subject, and says when that message is gone", async () => {
    const ns = stack.namespace;
    const oldLetter = async (sourceSequence: number) => {
      const h = headers();
      h.set("recsys-reason", "late: watermark 2024-01-02T00:30:00.000Z");
      h.set("recsys-source-stream", `${ns.toUpperCase()}_CLICKS`);
      h.set("recsys-source-sequence", String(sourceSequence));
      return (await jetstream(nc).publish(`${ns}.dlq.clicks`, new Uint8Array(), { headers: h })).seq;
    };
    const kept = await oldLetter(1);
    const gone = await oldLetter(999_999);
    const listed = await dlqJson("list", "--cause", "late");
    expect(listed.letters.map((l: { sequence: number }) => l.sequence)).toEqual(expect.arrayContaining([kept, gone]));

    const failed: { code?: number; stdout: string } = await dlq("replay", String(kept), String(gone), "--dry-run", "--json").catch(
      (err: { code: number; stdout: string }) => err,
    );
    expect(failed.code).toBe(1);
    const source = await (await jetstreamManager(nc)).streams.getMessage(`${ns.toUpperCase()}_CLICKS`, { seq: 1 });
    expect(JSON.parse(failed.stdout).letters).toEqual([
      { sequence: kept, cause: "late", outcome: "dry-run", subject: source!.subject, messageId: `dlq-replay-${kept}` },
      { sequence: gone, cause: "late", outcome: "unreplayable", error: `it names no source subject and ${ns.toUpperCase()}_CLICKS no longer holds #999999` },
    ]);
  });

  it("does not replay an embedding over a newer one: EMBEDDINGS keeps only the newest message of a page", async () => {
    const ns = stack.namespace;
    const subject = `${ns}.embeddings.dlqtest`;
    // Two messages of one page that are no embedding: profile dead-letters both, the stream keeps the second. The second goes out
    // once the first is filed: sent at once, it could replace the first in the stream before profile was delivered it.
    const filed = async () =>
      Object.values(
        (await (await jetstreamManager(nc)).streams.info(`${ns.toUpperCase()}_DEAD_LETTERS`, { subjects_filter: `${ns}.dlq.embeddings.>` })).state.subjects ??
          {},
      ).reduce((a, b) => a + b, 0);
    for (const [n, id] of ["first", "second"].entries()) {
      await jetstream(nc).publish(subject, Uint8Array.of(0xff, 0xff, 0xff, 0x07), { msgID: id });
      await vi.waitFor(async () => expect(await filed()).toBe(n + 1), { timeout: 20_000, interval: 100 });
    }

    const failed: { code?: number; stdout: string } = await dlq("replay", "--source", "embeddings", "--dry-run", "--json").catch(
      (err: { code: number; stdout: string }) => err,
    );
    expect(failed.code).toBe(1);
    const [older, newest] = JSON.parse(failed.stdout).letters;
    expect(older).toMatchObject({
      outcome: "unreplayable",
      error: expect.stringMatching(new RegExp(`^${ns.toUpperCase()}_EMBEDDINGS keeps the newest message of ${subject}, #\\d+, which a replay would replace$`)),
    });
    expect(newest).toMatchObject({ outcome: "dry-run", subject });
  });
});
