import { encodeClickBatch, encodeUserDeleted } from "@recsys/bus";
import { create } from "@bufbuild/protobuf";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { describe, expect, it } from "vitest";
import { CLICKS_TABLE } from "./tables.js";

describe("the CLICKS table", () => {
  it("keeps an erasure (UserDeleted) as a row of the erasures table, in the hour ingest accepted it, not as a click", () => {
    const t = Date.parse("2024-01-02T05:06:07Z");
    const rows = CLICKS_TABLE.rowsOf({ seq: 42, subject: "clicks.3", ...encodeUserDeleted({ eventId: "e-1", userid: "u-1", ingestTimeMs: t }) });
    expect(rows).toEqual([{ table: "erasures", eventTimeMs: t, ingestTimeMs: t, cells: [42n, "e-1", "u-1", t] }]);
  });

  it("keeps the clicks of a ClickBatch as its own rows", () => {
    const click = create(ClickSchema, { eventId: "c-1", userid: "u-1", url: "https://e.org/a", eventTimeMs: 1_000n, ingestTimeMs: 2_000n });
    const rows = CLICKS_TABLE.rowsOf({ seq: 7, subject: "clicks.3", ...encodeClickBatch([click]) });
    expect(rows).toEqual([{ eventTimeMs: 1_000, ingestTimeMs: 2_000, cells: [7n, "c-1", "u-1", "https://e.org/a", "view", 1_000, 2_000, "{}"] }]);
  });
});
