import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@recsys/contracts/gateway/v1/gateway";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error plain ESM script shared with `pnpm stack:reset`
import { resetNamespace } from "../scripts/reset.mjs";
import { privateStackEnv, repoRoot } from "./harness/stack.js";

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), "stack-reset-"));
let env: NodeJS.ProcessEnv;
let namespace: string;
let gateway: ReturnType<typeof createClient<typeof GatewayService>>;

// `pnpm stack:*` as a user runs it, but with pid files, logs, namespace and ports of the test's own.
function stack(command: string) {
  return run(process.execPath, [join(repoRoot, "scripts/stack.mjs"), command], { env, timeout: 150_000 });
}

function loadgen(command: "replay" | "content", lines: object[]) {
  const file = join(dir, `${command}-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join("\n")}\n`);
  const args = [join(repoRoot, "tools/loadgen/dist/main.js"), command, file, "--rate", "0", "--wait", "--wait-timeout", "60000", "--json"];
  return run(process.execPath, args, { env, timeout: 90_000 }).then(({ stdout }) => JSON.parse(stdout));
}

const A = "https://e.org/guitar",
  B = "https://e.org/football",
  C = "https://e.org/bread";
const page = (url: string, title: string, text: string) => ({ id: title, url, title, text, _source_time: "2024-01-01T00:00:00Z" });
const pageA = page(A, "Guitar", "The guitar is a musical instrument with six strings, played in rock, jazz and folk music.");
const pageB = page(B, "Football", "Football is a team sport played with a ball between two teams of eleven players.");
const pageC = page(C, "Bread", "Bread is a food made from flour and water, baked in an oven.");

async function after(url: string) {
  return (await gateway.recommendation({ url, limit: 10 })).items.map((i) => [i.recommendation, Number(i.frequency)]);
}

beforeAll(async () => {
  const ctx = await privateStackEnv("stackreset", { RECSYS_STACK_DIR: join(dir, "stack") });
  env = ctx.env;
  namespace = ctx.namespace;
  gateway = createClient(GatewayService, createConnectTransport({ baseUrl: ctx.url.gateway, httpVersion: "1.1" }));
  await stack("up");
});

afterAll(async () => {
  if (env) {
    await stack("down");
    await resetNamespace(namespace, env);
  }
  rmSync(dir, { recursive: true, force: true });
});

describe("pnpm stack:reset with the services running", () => {
  it("before the reset, the stack counts the clicks it got", async () => {
    // u1 reads the guitar page, then the bread page a minute later.
    await loadgen("replay", [
      { userid: "u1", url: A, event_time: "2024-01-02T00:00:00Z" },
      { userid: "u1", url: C, event_time: "2024-01-02T00:01:00Z" },
    ]);
    await loadgen("content", [pageA, pageC]);
    expect(await after(A)).toEqual([[C, 1]]);
  });

  it("restarts the running services, and afterwards they answer from the clicks and pages sent after it alone", async () => {
    const { stderr } = await stack("reset");

    // The same first click again (same id: the reset forgot it), then the football page.
    const replayed = await loadgen("replay", [
      { userid: "u1", url: A, event_time: "2024-01-02T00:00:00Z" },
      { userid: "u1", url: B, event_time: "2024-01-02T00:01:00Z" },
    ]);
    expect(replayed).toMatchObject({ sent: 2, accepted: 2, duplicates: 0, late: 0 });
    expect(await after(A)).toEqual([[B, 1]]);
    expect(await after(C)).toEqual([]);

    const loaded = await loadgen("content", [pageA, pageB]);
    expect(loaded).toMatchObject({ accepted: 2, rejected: 0 });
    // u1's interest is the mean of the guitar and football pages: both equally similar, bread gone.
    await expect
      .poll(
        async () =>
          (await gateway.similarContent({ userid: "u1", limit: 10, includeSeen: true })).items
            .map((i) => ({ url: i.url, similar: i.similarity > 0 }))
            .sort((x, y) => x.url.localeCompare(y.url)),
        { timeout: 30_000, interval: 200 },
      )
      .toEqual([
        { url: B, similar: true },
        { url: A, similar: true },
      ]);
    const [first, second] = (await gateway.similarContent({ userid: "u1", limit: 10, includeSeen: true })).items;
    expect(first!.similarity).toBeCloseTo(second!.similarity, 5);

    // It said what it did.
    for (const s of ["ingest", "covisit", "embedder", "profile", "gateway"]) {
      expect(stderr).toContain(`stopped ${s}`);
      expect(stderr).toContain(`started ${s}`);
    }
    expect(stderr).toContain("all services healthy");
  });

  it("with no service running, resets and starts none of them", async () => {
    await stack("down");
    const { stderr } = await stack("reset");
    expect(stderr).not.toContain("started");
    const { stdout } = await stack("status");
    expect(
      stdout
        .trim()
        .split("\n")
        .map((l) => l.split(/\s+/).slice(0, 2).join(" ")),
    ).toEqual(["ingest stopped", "covisit stopped", "embedder stopped", "profile stopped", "analytics stopped", "archive stopped", "gateway stopped"]);
  });
});
