import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "@recsys/logging";
import { rpcDuration } from "@recsys/metrics";

/** Every RPC's duration by method and status code (the code's name, "OK" on success). */
export const timeRpcs: Interceptor = (next) => async (req) => {
  const end = rpcDuration.startTimer({ method: `${req.service.typeName}/${req.method.name}` });
  try {
    const res = await next(req);
    end({ code: "OK" });
    return res;
  } catch (err) {
    end({ code: Code[ConnectError.from(err).code] });
    throw err;
  }
};

/**
 * One debug line per RPC, inside its span: method, code and milliseconds, with the trace id. A failure the implementation did not
 * mean for its caller (anything but a ConnectError: a store's connection refused, a bug) is answered Internal, "internal error",
 * and logged here in full: its message can name the service's hosts, credentials or data, and went to the caller as Unknown.
 */
export const logRpcs =
  (logger: Logger): Interceptor =>
  (next) =>
  async (req) => {
    const t0 = performance.now();
    let code = "OK";
    try {
      return await next(req);
    } catch (err) {
      if (!(err instanceof ConnectError)) {
        code = Code[Code.Internal];
        logger.error({ err, method: `${req.service.typeName}/${req.method.name}` }, "rpc failed");
        throw new ConnectError("internal error", Code.Internal, undefined, undefined, err);
      }
      code = Code[err.code];
      throw err;
    } finally {
      logger.debug({ method: `${req.service.typeName}/${req.method.name}`, code, ms: Math.round((performance.now() - t0) * 10) / 10 }, "rpc");
    }
  };

const digest = (text: string) => createHash("sha256").update(text).digest();

/** Refuses every RPC but health checks unless it carries `authorization: Bearer <token>`. */
export function requireServiceToken(token: string): Interceptor {
  const expected = digest(token);
  return (next) => async (req) => {
    if (req.service.typeName === "grpc.health.v1.Health") return next(req);
    const sent = req.header.get("authorization")?.match(/^Bearer\s+(\S+)$/i)?.[1];
    if (sent === undefined) throw new ConnectError("authorization: this service needs the service token (Bearer)", Code.Unauthenticated);
    if (!timingSafeEqual(digest(sent), expected)) throw new ConnectError("authorization: not the service token", Code.Unauthenticated);
    return next(req);
  };
}

/** For clients of the services: sends the service token with every call, when there is one. */
export function sendServiceToken(token: string | undefined): Interceptor[] {
  if (!token) return [];
  const value = `Bearer ${token}`;
  return [
    (next) => (req) => {
      req.header.set("authorization", value);
      return next(req);
    },
  ];
}
