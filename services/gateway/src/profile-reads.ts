import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { BatchSimilarContentResponseSchema, type ProfileService } from "@recsys/contracts/profile/v1/profile";
import { similarContentMany } from "@recsys/profile/reads";
import { answerSimilarContentBatch } from "@recsys/profile/similar-content";
import type { Logger } from "@recsys/logging";
import { failureLog } from "./failure-log.js";
import type pg from "pg";

/**
 * profile's client with its `BatchSimilarContent` answered here, from profile's PostgreSQL, by profile's own code (the same checks,
 * statement and answers): the busiest personal query without a second process in its path. The pool's role needs only SELECT on
 * profile's schema (deploy: recsys_reader). A failing PostgreSQL, or a schema profile has not yet created, is Unavailable. The
 * other RPCs still go to profile, the only writer of its tables.
 */
export function readingProfilePostgres(client: Client<typeof ProfileService>, pool: pg.Pool, logger: Logger): Client<typeof ProfileService> {
  const failed = failureLog(logger, "profile's PostgreSQL failed a read");
  return {
    ...client,
    async batchSimilarContent(req) {
      const requests = (req.requests ?? []).map((r) => ({ userid: r.userid ?? "", limit: r.limit ?? 0, includeSeen: r.includeSeen ?? false }));
      const results = await answerSimilarContentBatch(requests, (asks) => similarContentMany(pool, asks)).catch((err: unknown) => {
        if (err instanceof ConnectError) throw err;
        // Its text, which can name hosts, roles and users, goes to the log, not to the caller.
        failed(err);
        throw new ConnectError("profile's PostgreSQL is unavailable", Code.Unavailable, undefined, undefined, err);
      });
      return create(BatchSimilarContentResponseSchema, { results });
    },
  };
}
