// The query phases beside their limits: each latency phase from a load generator of its own (load-cli.ts), against the gateway
// and against a bare server (bare-server.ts) answering the same routes from the same Redis and PostgreSQL with covisit's script
// and profile's statement, at the same rates, on the same urls and users; quiet, and while 1,000 clicks/s are ingested.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { replay } from "@recsys/loadgen/replay";
import type { LatencySummary } from "./open-loop.js";
import { url } from "./stack.js";

const here = dirname(fileURLToPath(import.meta.url));

/** A phase's latencies, and how many requests went before them unmeasured (load-cli.ts' warm-up). */
export interface PhaseSummary extends LatencySummary {
  warmUpRequests: number;
}

/** A latency phase from load-cli.ts in a process of its own: request i sends bodies[i mod length] to `method` of `base`. */
export async function loadPhase(base: string, method: string, rate: number, seconds: number, bodies: unknown[]): Promise<PhaseSummary> {
  const dir = mkdtempSync(join(tmpdir(), "recsys-load-"));
  const file = join(dir, "phase.json");
  writeFileSync(file, JSON.stringify({ base, path: `/recsys.gateway.v1.GatewayService/${method}`, rate, seconds, bodies }));
  try {
    const child = spawn(process.execPath, [join(here, "load-cli.js"), file], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    const [code] = await once(child, "exit");
    if (code !== 0) throw new Error(`the load generator of ${method} at ${rate}/s exited with ${code}`);
    return JSON.parse(out) as PhaseSummary;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The bare server, started on a free port; `stop` ends it. */
export async function startBareServer(): Promise<{ url: string; stop(): void }> {
  const child: ChildProcess = spawn(process.execPath, [join(here, "bare-server.js")], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, PORT: "0" },
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`the bare server exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}`, stop: () => void child.kill("SIGTERM") };
}

/** Runs `phase` while reference clicks (the file's, new users and times) go into ingest at 1,000 clicks/s. */
export async function whileIngesting<T>(file: string, phase: () => Promise<T>): Promise<{ result: T; clicks: number }> {
  const background = replay({
    file,
    rate: 1000,
    target: url.ingest,
    covisit: url.covisit,
    wait: false,
    shiftTime: true,
    batchSize: 100,
    concurrency: 4,
    waitTimeoutMs: 60_000,
  });
  const result = await phase();
  const sent = await background;
  return { result, clicks: sent.accepted };
}

/** The highest of `rates` (ascending) at which `phase` keeps its p99 within `p99Ms`, trying them in order until one does not. */
export async function highestRateWithin(rates: number[], p99Ms: number, phase: (rate: number) => Promise<LatencySummary>) {
  let best = 0;
  const tried: Record<string, number> = {};
  for (const rate of rates) {
    const s = await phase(rate);
    tried[String(rate)] = s.p99Ms;
    if (s.p99Ms > p99Ms || s.errors > 0) break;
    best = rate;
  }
  return { best, p99MsByRate: tried };
}

/**
 * A query phase through the gateway and on the bare server by turns, `rounds` times: the gateway first in even rounds, the
 * bare server first in odd ones, so that a machine growing busier or quieter weighs on both sides alike. Answers each side's runs
 * and each round's ratio of the two p99s, gateway over bare. A slow spell on this machine lasts seconds and lands on one side of
 * one round: one run a side, or the mean of two, put one spell's weight on the whole ratio (1.51 to 4.65 in three runs on one VM).
 */
export async function pairedRounds(rounds: number, gatewayPhase: (round: number) => Promise<LatencySummary>, barePhase: () => Promise<LatencySummary>) {
  const gateway: LatencySummary[] = [];
  const bare: LatencySummary[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < rounds; round++) {
    let g: LatencySummary;
    let b: LatencySummary;
    if (round % 2 === 0) {
      g = await gatewayPhase(round);
      b = await barePhase();
    } else {
      b = await barePhase();
      g = await gatewayPhase(round);
    }
    gateway.push(g);
    bare.push(b);
    ratios.push(g.p99Ms / b.p99Ms);
  }
  return { gateway, bare, ratios };
}
