import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Topology } from "@recsys/bus";
import { replay } from "@recsys/loadgen/replay";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { expectCovisitEquals } from "./harness/oracle.js";
import { readClicks, referenceCoVisits } from "./harness/reference.js";
import { replayOptions } from "./harness/replay.js";
import { rebuildWithArchive } from "./harness/rebuild.js";
import { natsOf, referenceClicks, type ServiceName, startStack, type TestStack } from "./harness/stack.js";

// CLICKS keeps its messages for CLICKS_MAX_AGE_MS (7 days by default; 20 s here), and the archive keeps them for good. A covisit
// or analytics that never consumed the stream must not start counting from what is left: each refuses, naming its rebuild, and
// the rebuild counts the expired clicks from the archive.

const MAX_AGE_MS = 20_000;

describe("CLICKS retention", () => {
  let stack: TestStack;
  const dir = mkdtempSync(join(tmpdir(), "recsys-retention-"));
  beforeAll(async () => {
    stack = await startStack("retention", { ARCHIVE_DIR: dir, CLICKS_MAX_AGE_MS: String(MAX_AGE_MS) }, { services: ["ingest", "archive"] });
  });
  afterAll(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The service, started on the stack, exits with 1 and says why in its log. */
  async function refusal(service: ServiceName): Promise<string> {
    const child = stack.spawn(service);
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    const [code] = await once(child, "exit");
    expect(code, out).toBe(1);
    return out;
  }

  it("expires clicks after CLICKS_MAX_AGE_MS; a new covisit or analytics refuses to count from the rest, and covisit's rebuild from the archive equals the reference SQL", async () => {
    const summary = await replay({ ...replayOptions(stack, referenceClicks), wait: false });
    expect(summary).toMatchObject({ sent: 19_855, accepted: 19_855 });

    const nc = await connect({ servers: natsOf(stack) });
    const jsm = await jetstreamManager(nc);
    const clicksStream = new Topology(stack.namespace).clicksStream;
    const info = await jsm.streams.info(clicksStream);
    expect(info.config.max_age).toBe(MAX_AGE_MS * 1e6);
    const last = info.state.last_seq;
    // Every message reaches the archive, then expires from the stream.
    await expect
      .poll(
        async () => {
          const clicks = (await clientsOf(stack).archive.progress({})).tables.find((t) => t.table === "clicks")!;
          return { through: clicks.archivedThrough, lost: clicks.lostMessages };
        },
        { timeout: 90_000, interval: 500 },
      )
      .toEqual({ through: BigInt(last), lost: 0n });
    await expect.poll(async () => (await jsm.streams.info(clicksStream)).state.messages, { timeout: 2 * MAX_AGE_MS, interval: 500 }).toBe(0);
    await nc.close();

    const covisitLog = await refusal("covisit");
    expect(covisitLog).toContain(`no longer holds its messages 1-${last}`);
    expect(covisitLog).toContain("pnpm covisit:rebuild");
    const analyticsLog = await refusal("analytics");
    expect(analyticsLog).toContain(`no longer holds its messages 1-${last}`);
    expect(analyticsLog).toContain("pnpm analytics:rebuild");

    // Refused without the archive, done with it; covisit then starts and answers every url as the reference SQL does.
    rebuildWithArchive(stack, "covisit", dir, last + 1);
    await stack.start("covisit");
    const urls = [...new Set(readClicks(referenceClicks).map((c) => c.url))];
    await expectCovisitEquals(stack, urls, await referenceCoVisits(readClicks(referenceClicks)));
  });
});
