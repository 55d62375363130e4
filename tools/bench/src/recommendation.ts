// What a Recommendation costs: the gateway's process, covisit's, and Redis (which runs recommend.lua), in CPU per request.
import type { RedisClient } from "@recsys/covisit-store";
import { benchRedis, redisCpuSeconds } from "./baselines.js";
import type { PhaseSummary } from "./anchors.js";
import { samples, total } from "./service-metrics.js";
import { url } from "./stack.js";

interface CpuReading {
  gatewaySeconds: number;
  covisitSeconds: number;
  redisSeconds: number;
}

async function reading(redis: RedisClient): Promise<CpuReading> {
  const [gateway, covisit, redisSeconds] = await Promise.all([samples(url.gateway), samples(url.covisit), redisCpuSeconds(redis)]);
  return { gatewaySeconds: total(gateway, "process_cpu_seconds_total"), covisitSeconds: total(covisit, "process_cpu_seconds_total"), redisSeconds };
}

/** A phase's latencies, and the CPU per request of the gateway's process, covisit's and Redis meanwhile, in microseconds. */
export interface CovisitCost {
  latencies: PhaseSummary;
  gatewayCpuMicros: number;
  covisitCpuMicros: number;
  redisCpuMicros: number;
}

/** The three processes' CPU per request together. */
export const cpuMicros = (c: CovisitCost) => c.gatewayCpuMicros + c.covisitCpuMicros + c.redisCpuMicros;

/** Runs `phase` and answers its latencies with the gateway's, covisit's and Redis' CPU per request meanwhile. */
export async function withCovisitCpu(phase: () => Promise<PhaseSummary>): Promise<CovisitCost> {
  const redis = await benchRedis();
  try {
    const before = await reading(redis);
    const latencies = await phase();
    const after = await reading(redis);
    // The readings span the load generator's warm-up as well as the measured requests.
    const perRequest = (seconds: number) => (seconds * 1e6) / Math.max(1, latencies.requests + latencies.warmUpRequests);
    return {
      latencies,
      gatewayCpuMicros: perRequest(after.gatewaySeconds - before.gatewaySeconds),
      covisitCpuMicros: perRequest(after.covisitSeconds - before.covisitSeconds),
      redisCpuMicros: perRequest(after.redisSeconds - before.redisSeconds),
    };
  } finally {
    redis.disconnect();
  }
}
