import { getComplexity, type ComplexityEstimator } from "graphql-query-complexity";
import { createGraphQLError, type Plugin } from "graphql-yoga";
import { LIMITS } from "@recsys/validation";

/**
 * A list field without a `limit` argument (EventsLiked) counts as the most it can give: the gateway asks for a page's most
 * (1,000). Counted as 100, fifteen aliases of it passed a limit of 5,000 items and asked profile for 15,000.
 */
const UNLIMITED_LIST_ITEMS = LIMITS.recommendationLimit.max;

/**
 * The items a document may make the backends produce: each list field counts its `limit` (or the
 * default) times what one item asks for, so aliases of one large list add up.
 */
const items: ComplexityEstimator = ({ type, field, args, childComplexity }) => {
  if (type.name.startsWith("__") || field.name.startsWith("__")) return 0;
  // Arguments come with the schema's defaults applied: SimilarContent without a limit counts 10. A limit below 1 counts as the
  // most a list gives: counted as it came, a negative one took its size off the document's other fields, which then all ran
  // (15,000 items past a limit of 5,000), while only that field was refused.
  const limit = typeof args.limit === "number" && args.limit >= 1 ? args.limit : UNLIMITED_LIST_ITEMS;
  // By its name ("[Events!]!", "EventsPage!"), not instanceof: the schema may come from another copy of graphql-js.
  const typeName = String(field.type);
  // A page (EventsPage, …) counts its limit; the list inside it counts each of those items once.
  if (typeName.replace(/!$/, "").endsWith("Page")) return limit * Math.max(1, childComplexity);
  if (!typeName.startsWith("[")) return childComplexity;
  if (type.name.endsWith("Page")) return Math.max(1, childComplexity);
  return limit * Math.max(1, childComplexity);
};

/** Refuses a document that asks for more than `max` items in all, before any resolver runs. */
export function maxItemsPlugin(max: number): Plugin {
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const asked = getComplexity({
        schema: args.schema,
        query: args.document,
        variables: (args.variableValues ?? {}) as Record<string, unknown>,
        operationName: args.operationName ?? undefined,
        estimators: [items],
      });
      if (asked > max) {
        setResultAndStopExecution({
          errors: [
            createGraphQLError(`Items limit of ${max} exceeded, found ${asked}: ask for fewer or smaller lists`, { extensions: { code: "BAD_USER_INPUT" } }),
          ],
        });
      }
    },
  };
}

const JSON_BODY = /^application\/(graphql-response\+)?json\s*(;|$)/i;

/**
 * POST bodies as JSON only: no form-encoded or multipart request (what an HTML form can send from
 * another site) reaches GraphQL. 415 names what is accepted.
 */
export function jsonBodiesOnlyPlugin(): Plugin {
  return {
    onRequest({ request, endResponse, fetchAPI }) {
      if (request.method !== "POST") return;
      const type = request.headers.get("content-type") ?? "";
      if (JSON_BODY.test(type)) return;
      endResponse(
        new fetchAPI.Response(
          JSON.stringify({ errors: [{ message: "content-type: POST /graphql takes application/json only", extensions: { code: "UNSUPPORTED_MEDIA_TYPE" } }] }),
          { status: 415, headers: { "content-type": "application/json; charset=utf-8" } },
        ),
      );
    },
  };
}
