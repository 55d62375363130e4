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

/** One debug line per RPC, inside its span: method, code and milliseconds, with the trace id. */
export const logRpcs =
  (logger: Logger): Interceptor =>
  (next) =>
  async (req) => {
    const t0 = performance.now();
    let code = "OK";
    try {
      return await next(req);
    } catch (err) {
      code = Code[ConnectError.from(err).code];
      throw err;
    } finally {
      logger.debug({ method: `${req.service.typeName}/${req.method.name}`, code, ms: Math.round((performance.now() - t0) * 10) / 10 }, "rpc");
    }
  };
