import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "@recsys/logging";
import { failureLog } from "./failure-log.js";

/** The codes of a call that failed in transport or inside the backend: not about the request, and their text is not for the caller. */
const FAILED = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Internal, Code.Unknown, Code.Aborted, Code.DataLoss]);

/**
 * The gateway's client interceptor for a backend: a call that failed in transport or inside `backend` reaches the caller with its
 * code and a fixed message ("profile is unavailable"); its text, which names hosts and ports ("connect ECONNREFUSED
 * 10.0.0.5:50054") or the bus's, goes to the log, as the gateway's own reads of Redis and PostgreSQL do. A backend's answer about
 * the request itself (InvalidArgument naming the field, NotFound, ResourceExhausted, PermissionDenied, ...) goes through as it is.
 */
export function hideBackendFailures(backend: string, logger: Logger): Interceptor {
  const failed = failureLog(logger, `${backend} failed a call`);
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      const e = ConnectError.from(err);
      if (!FAILED.has(e.code)) throw err;
      failed(err);
      const message = e.code === Code.Unavailable ? "is unavailable" : e.code === Code.DeadlineExceeded ? "did not answer in time" : "failed";
      throw new ConnectError(`${backend} ${message}`, e.code, undefined, undefined, err);
    }
  };
}
