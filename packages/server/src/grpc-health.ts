import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@recsys/contracts/grpc/health/v1/health";

/** True while every dependency the service needs is reachable. */
export type Healthy = () => boolean | Promise<boolean>;

const WATCH_INTERVAL_MS = 1_000;

/**
 * grpc.health.v1.Health for the whole process: "" and every service this port serves are SERVING while `healthy()` holds, else NOT_SERVING.
 * Watch sends each change (checked every second) until the client goes away; other names are unknown.
 */
export function healthRoutes(router: ConnectRouter, healthy: Healthy) {
  const served = new Set(["", ...router.handlers.map((h) => h.service.typeName)]);
  const status = async () => ((await Promise.resolve(healthy()).catch(() => false)) ? Status.SERVING : Status.NOT_SERVING);
  router.service(Health, {
    async check(req) {
      if (!served.has(req.service)) throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      return { status: await status() };
    },
    async *watch(req, ctx) {
      let last: Status | undefined;
      while (!ctx.signal.aborted) {
        const now = served.has(req.service) ? await status() : Status.SERVICE_UNKNOWN;
        if (now !== last) yield { status: (last = now) };
        // The client going away ends the wait early, and the loop with it.
        await sleep(WATCH_INTERVAL_MS, undefined, { signal: ctx.signal }).catch((err: unknown) => {
          if (!ctx.signal.aborted) throw err;
        });
      }
    },
  });
}
