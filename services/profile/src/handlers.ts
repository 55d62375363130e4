import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { consumerNames, consumerProgress, type Bus } from "@recsys/bus";
import { ProfileService } from "@recsys/contracts/profile/v1/profile";
import {
  checkLimit,
  checkOffset,
  checkPageId,
  checkPageStart,
  checkQuery,
  checkUrl,
  checkUserid,
  decodeCursor,
  encodeCursor,
  FieldError,
  orInvalidArgument,
} from "@recsys/validation";
import type { ProfileStore } from "./pg-store.js";
import { sqlState } from "./sql-state.js";
import type { EventKey, EventPage } from "./reads.js";
import { answerSimilarContentBatch, checkSimilarContent, limitOrDefault } from "./similar-content.js";
import type { EventRow } from "./types.js";

export const MAX_IDS_PER_CALL = 1_000;

const events = (rows: EventRow[]) => ({ items: rows.map((r) => ({ ...r, likeCount: BigInt(r.likeCount) })) });

/** EventsLiked's page when not asked for one: the most a page holds. */
const MAX_PAGE = 1000;

/** Where a page of `list` (in id order) starts: after the key a cursor of it carries, or at the offset. */
function eventsAfter(list: string, offset: number, cursor: string): EventKey | undefined {
  checkPageStart(offset, cursor);
  if (cursor === "") return undefined;
  const [id, url] = decodeCursor(list, cursor, ["string", "string"] as const);
  return { id, url };
}

/** A page on the wire: its items, and the cursor of the next one when more follow. */
const eventPage = (list: string, page: EventPage) => ({
  ...events(page.rows),
  nextCursor: page.next ? encodeCursor(list, [page.next.id, page.next.url]) : "",
});

export function profileRoutes(store: ProfileStore, bus: Bus) {
  return (router: ConnectRouter) =>
    router.service(ProfileService, {
      async similarContent(req, ctx) {
        const { userid, limit, includeSeen } = checkSimilarContent(req);
        return { items: await store.similarContent(userid, limit, includeSeen, ctx.signal) };
      },
      // Each request checked alone, then one statement for every one that checks out.
      async batchSimilarContent(req, ctx) {
        return { results: await answerSimilarContentBatch(req.requests, (asks) => store.similarContentMany(asks, ctx.signal)) };
      },
      async events(req, ctx) {
        const limit = orInvalidArgument(() => checkLimit(req.limit));
        const offset = orInvalidArgument(() => checkOffset(req.offset));
        const after = orInvalidArgument(() => eventsAfter("Events", offset, req.cursor));
        return eventPage("Events", await store.events(limit, offset, after, ctx.signal));
      },
      async eventsById(req, ctx) {
        const ids = orInvalidArgument(() => {
          if (req.ids.length > MAX_IDS_PER_CALL) throw new FieldError("ids", `at most ${MAX_IDS_PER_CALL} per call`);
          return req.ids.map((id, i) => checkPageId(id, `ids[${i}]`));
        });
        return events(await store.eventsById(ids, ctx.signal));
      },
      async eventsLiked(req, ctx) {
        const userid = orInvalidArgument(() => checkUserid(req.userid));
        const limit = orInvalidArgument(() => checkLimit(req.limit === 0 ? MAX_PAGE : req.limit));
        const offset = orInvalidArgument(() => checkOffset(req.offset));
        const after = orInvalidArgument(() => eventsAfter("EventsLiked", offset, req.cursor));
        return eventPage("EventsLiked", await store.eventsLiked(userid, limit, offset, after, ctx.signal));
      },
      async recommendedEvents(req, ctx) {
        const userid = orInvalidArgument(() => checkUserid(req.userid));
        const limit = orInvalidArgument(() => limitOrDefault(req.limit));
        return events(await store.recommendedEvents(userid, limit, req.includeSeen, ctx.signal));
      },
      async relatedContent(req, ctx) {
        const url = orInvalidArgument(() => checkUrl(req.url));
        const limit = orInvalidArgument(() => limitOrDefault(req.limit));
        const userid = req.userid === "" ? "" : orInvalidArgument(() => checkUserid(req.userid));
        const items = await store.relatedContent(url, limit, userid, ctx.signal);
        if (!items) throw new ConnectError(`url: no page stored at ${url}`, Code.NotFound);
        return { items };
      },
      async personalizedEventSearch(req, ctx) {
        const query = orInvalidArgument(() => checkQuery(req.query));
        const userid = orInvalidArgument(() => checkUserid(req.userid));
        const limit = orInvalidArgument(() => limitOrDefault(req.limit));
        try {
          return events(await store.personalizedEventSearch(query, userid, limit, ctx.signal));
        } catch (err) {
          // websearch_to_tsquery nests each '-' (NOT) on a stack of 32: a query with more in a row fails inside PostgreSQL.
          if (sqlState(err) === "XX000" && /tsquery stack too small/.test(String(err)))
            throw new ConnectError("query: has more operators in a row than PostgreSQL's search nests (at most 32 '-')", Code.InvalidArgument);
          throw err;
        }
      },
      async exists(req, ctx) {
        const { userid, url } = orInvalidArgument(() => {
          if (req.userid === "" && req.url === "") throw new FieldError("userid", "give a userid, a url or both");
          return { userid: req.userid === "" ? "" : checkUserid(req.userid), url: req.url === "" ? "" : checkUrl(req.url) };
        });
        return store.exists(userid, url, ctx.signal);
      },
      async progress() {
        const [embeddings, clicks, likes, interests, counts] = await Promise.all([
          consumerProgress(bus, bus.topology.embeddingsStream, consumerNames("profile", "embeddings").durable),
          consumerProgress(bus, bus.topology.clicksStream, consumerNames("profile", "clicks").durable),
          consumerProgress(bus, bus.topology.engagementStream, consumerNames("profile", "likes").durable),
          consumerProgress(bus, bus.topology.interestEmbeddingsStream, consumerNames("profile", "interest-embeddings").durable),
          store.counts(),
        ]);
        return {
          embeddingsAckFloor: embeddings.ackFloor,
          clicksAckFloor: clicks.ackFloor,
          pages: counts.pages,
          parkedClicks: counts.parkedClicks,
          likesAckFloor: likes.ackFloor,
          interestEmbeddingsAckFloor: interests.ackFloor,
        };
      },
    });
}
