import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Topology } from "@recsys/bus";
import { expect } from "vitest";
import { natsOf, repoRoot, type TestStack } from "./stack.js";

/** CLICKS' retention drops its first half: every message before the returned sequence, the first one kept. */
export async function dropClicksHead(stack: TestStack): Promise<number> {
  const nc = await connect({ servers: natsOf(stack) });
  try {
    const jsm = await jetstreamManager(nc);
    const stream = new Topology(stack.namespace).clicksStream;
    const firstKept = Math.floor((await jsm.streams.info(stream)).state.last_seq / 2) + 1;
    await jsm.streams.purge(stream, { seq: firstKept });
    expect((await jsm.streams.info(stream)).state.first_seq).toBe(firstKept);
    return firstKept;
  } finally {
    await nc.close();
  }
}

/**
 * A service's rebuild (services/<service>/dist/rebuild-cli.js) after CLICKS lost the messages before `firstKept`: refused without
 * the archive (an empty directory), done with the one in `archiveDir`, applying those messages from it and every later one it holds.
 */
export function rebuildWithArchive(stack: TestStack, service: "covisit" | "analytics", archiveDir: string, firstKept: number): void {
  const run = (dir: string) =>
    spawnSync(process.execPath, [join(repoRoot, "services", service, "dist/rebuild-cli.js")], { env: { ...stack.env, ARCHIVE_DIR: dir }, encoding: "utf8" });
  const empty = mkdtempSync(join(tmpdir(), "recsys-archive-empty-"));
  const refused = run(empty);
  rmSync(empty, { recursive: true, force: true });
  expect(refused.status).toBe(1);
  expect(refused.stderr).toMatch(new RegExp(`begins at sequence ${firstKept} and the archive in .* holds none of it`));
  const done = run(archiveDir);
  expect(done.status, done.stderr).toBe(0);
  // Those messages and every later one the archive held: the service goes on after them.
  const through = /applied \d+ clicks of messages 1-(\d+) from the archive/.exec(done.stdout);
  expect(through, done.stdout).not.toBeNull();
  expect(Number(through![1])).toBeGreaterThanOrEqual(firstKept - 1);
  expect(done.stdout).toContain(`from message ${Number(through![1]) + 1} of`);
}
