#!/usr/bin/env node
// A latency phase's load from a process of its own, so that sending and timing never share an event loop (or a garbage
// collector) with what they measure: the bench's open loop (open-loop.ts) at a rate against one JSON route of a server, first as
// long again unmeasured (at most 3 s: a process's first requests find its code not yet compiled and its connections not yet open,
// which a server in service is past), then measured. Reads its phase from the JSON file named by its one argument; prints the
// LatencySummary as JSON on stdout, with the warm-up's request count (PhaseSummary).
import { readFileSync } from "node:fs";
import { Pool } from "undici";
import { runOpenLoop } from "./open-loop.js";

export interface LoadPhase {
  /** The server, e.g. http://127.0.0.1:8080. */
  base: string;
  /** The route, e.g. /recsys.gateway.v1.GatewayService/Recommendation. */
  path: string;
  rate: number;
  seconds: number;
  /** Request i sends bodies[i mod length]. */
  bodies: unknown[];
}

const phase = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as LoadPhase;
const bodies = phase.bodies.map((b) => JSON.stringify(b));
const pool = new Pool(phase.base, { connections: 128 });
const request = async (i: number) => {
  const res = await pool.request({ path: phase.path, method: "POST", headers: { "content-type": "application/json" }, body: bodies[i % bodies.length]! });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${phase.path}: ${res.statusCode} ${text}`);
};
const warmUp = await runOpenLoop({ rate: phase.rate, durationMs: Math.min(phase.seconds, 3) * 1000, request });
const summary = await runOpenLoop({ rate: phase.rate, durationMs: phase.seconds * 1000, request });
await pool.close();
process.stdout.write(`${JSON.stringify({ ...summary, warmUpRequests: warmUp.requests })}\n`);
