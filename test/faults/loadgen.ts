import { spawn } from "node:child_process";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { clientsOf } from "../harness/clients.js";
import type { RawClick } from "../harness/reference.js";
import { repoRoot, type ServiceName, type TestStack } from "../harness/stack.js";

/** Runs the loadgen CLI as a user would, with --json; resolves to its summary. */
export function loadgen(stack: TestStack, args: string[]): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, [join(repoRoot, "tools/loadgen/dist/main.js"), ...args, "--json"], {
    env: { ...stack.env, INGEST_URL: stack.url.ingest, COVISIT_URL: stack.url.covisit, EMBEDDER_URL: stack.url.embedder, PROFILE_URL: stack.url.profile },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) =>
    child.once("exit", (code) => {
      if (code !== 0) reject(new Error(`loadgen ${args[0]} exited ${code}: ${err.slice(-2000)}`));
      else resolve(JSON.parse(out.trim().split("\n").pop()!) as Record<string, unknown>);
    }),
  );
}

/**
 * Sends clicks one at a time through the gateway's Clickstream, as a web site would, retrying a
 * failed call with the same click (so the same event id) until it is accepted. Calls overlap, so
 * one user's clicks may arrive out of order, by far less than the allowed lateness.
 */
export async function clickThroughGateway(stack: TestStack, clicks: RawClick[], concurrency = 4): Promise<{ sent: number; retries: number }> {
  const { gateway } = clientsOf(stack);
  let next = 0;
  let retries = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (;;) {
        const i = next++;
        if (i >= clicks.length) return;
        const c = clicks[i]!;
        for (let attempt = 0; ; attempt++) {
          try {
            await gateway.clickstream({ event: { userid: c.userid, url: c.url, eventTime: c.event_time } }, { timeoutMs: 5_000 });
            break;
          } catch (err) {
            const code = ConnectError.from(err).code;
            if (code === Code.InvalidArgument || attempt > 100) throw err;
            retries++;
            await sleep(100);
          }
        }
      }
    }),
  );
  return { sent: clicks.length, retries };
}

/** kill -9, then start again on the same port; resolves once healthy. */
export async function crashAndRestart(stack: TestStack, service: ServiceName, log: string[]) {
  const pid = stack.process(service)?.pid;
  await stack.kill(service);
  const killedAt = Date.now();
  await stack.start(service);
  log.push(`${service}: pid ${pid} killed (SIGKILL), healthy again after ${Date.now() - killedAt} ms`);
}

/** Runs `steps` at their offsets (ms) from now, one after another. */
export async function timeline(steps: Array<[number, () => Promise<void>]>) {
  const t0 = Date.now();
  for (const [at, step] of steps) {
    const wait = t0 + at - Date.now();
    if (wait > 0) await sleep(wait);
    await step();
  }
}
