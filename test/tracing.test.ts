import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { repoRoot, startStack, type ServiceName, type TestStack } from "./harness/stack.js";

let stack: TestStack;
beforeAll(async () => {
  stack = await startStack("trace", { LOG_LEVEL: "debug" });
});
afterAll(async () => stack?.stop());

/** The JSON log lines a service wrote that carry `traceId`. */
function linesWithTrace(service: ServiceName, traceId: string): Array<Record<string, unknown>> {
  const text = readFileSync(join(repoRoot, "test/artifacts/logs", `${stack.namespace}-${service}.log`), "utf8");
  return text
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.trace_id === traceId);
}

it("follows one click by its W3C trace from the gateway through ingest, NATS, covisit and profile", async () => {
  const traceId = randomBytes(16).toString("hex");
  const res = await fetch(`${stack.url.gateway}/recsys.gateway.v1.GatewayService/Clickstream`, {
    method: "POST",
    headers: { "content-type": "application/json", traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01` },
    body: JSON.stringify({ event: { userid: "traced", url: "https://e.org/traced" } }),
  });
  expect(res.status).toBe(200);
  expect(res.headers.get("x-request-id")).toBe(traceId);

  const c = clientsOf(stack);
  await expect.poll(async () => (await c.covisit.progress({})).ackFloorStreamSequence, { timeout: 10_000 }).toBe(1n);
  await expect.poll(async () => (await c.profile.progress({})).clicksAckFloor, { timeout: 10_000 }).toBe(1n);
  await expect.poll(() => linesWithTrace("profile", traceId).length, { timeout: 5_000 }).toBeGreaterThan(0);

  expect(linesWithTrace("gateway", traceId).map((l) => l.method)).toContain("recsys.gateway.v1.GatewayService/Clickstream");
  expect(linesWithTrace("ingest", traceId).map((l) => l.method)).toContain("recsys.ingest.v1.IngestService/PublishClicks");
  expect(linesWithTrace("covisit", traceId).map((l) => [l.msg, l.consumer, l.disposition])).toContainEqual(["message handled", "covisit", "ack"]);
  expect(linesWithTrace("profile", traceId).map((l) => [l.msg, l.consumer, l.disposition])).toContainEqual(["message handled", "profile-clicks", "ack"]);
  // Each hop is a span of its own in the one trace.
  const spans = new Set((["gateway", "ingest", "covisit", "profile"] as const).flatMap((s) => linesWithTrace(s, traceId).map((l) => l.span_id)));
  expect(spans.size).toBeGreaterThanOrEqual(4);
  // A request without a traceparent starts a trace of its own, still answered as x-request-id.
  const other = await fetch(`${stack.url.gateway}/recsys.gateway.v1.GatewayService/Recommendation`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ url: "https://e.org/traced" }),
  });
  expect(other.headers.get("x-request-id")).toMatch(/^[0-9a-f]{32}$/);
  expect(other.headers.get("x-request-id")).not.toBe(traceId);
});
