import { create, toBinary } from "@bufbuild/protobuf";
import { StatedInterestSchema, type InterestEmbedding } from "@recsys/contracts/events/v1/events";
import { describe, expect, it } from "vitest";
import { PublishFailedError, StreamFullError } from "@recsys/bus";
import { QueueFullError } from "./batcher.js";
import { embedInterestMessage } from "./interests.js";

const stated = (fields: { eventId?: string; userid?: string; text?: string }) =>
  toBinary(
    StatedInterestSchema,
    create(StatedInterestSchema, { eventId: "e1", userid: "1234", text: "stream processing", sourceTimeMs: 5n, ingestTimeMs: 7n, ...fields }),
  );

function deps(embed: (t: string) => Promise<Float32Array> = async (t) => Float32Array.of(t.length, 1)) {
  const published: InterestEmbedding[] = [];
  return { published, deps: { embed, model: "m", publish: async (e: InterestEmbedding) => void published.push(e) } };
}

describe("embedInterestMessage", () => {
  it("waits out a publish that failed or a full stream (retried), and throws anything else", async () => {
    const failing = (err: Error) => ({ embed: async () => Float32Array.of(1, 1), model: "m", publish: async () => Promise.reject(err) });
    expect(await embedInterestMessage(stated({}), failing(new PublishFailedError("S", "timeout")))).toMatchObject({ kind: "retry" });
    expect(await embedInterestMessage(stated({}), failing(new StreamFullError("S")))).toMatchObject({ kind: "retry" });
    await expect(embedInterestMessage(stated({}), failing(new TypeError("a bug")))).rejects.toThrow("a bug");
  });

  it("publishes the text's vector under the interest's own event id and user, with its ingest time", async () => {
    const { published, deps: d } = deps();
    expect(await embedInterestMessage(stated({}), d)).toEqual({ kind: "ack" });
    expect(published).toHaveLength(1);
    expect(published[0]).toMatchObject({ eventId: "e1", userid: "1234", sourceTimeMs: 5n, ingestTimeMs: 7n, model: "m" });
    expect(published[0]!.embedding).toEqual([17, 1]);
  });

  it("dead-letters what cannot be an interest, and publishes nothing", async () => {
    const { published, deps: d } = deps();
    expect((await embedInterestMessage(Uint8Array.of(0xff, 0xff, 0xff), d)).kind).toBe("dead-letter");
    expect((await embedInterestMessage(stated({ text: " " }), d)).kind).toBe("dead-letter");
    expect((await embedInterestMessage(stated({ userid: "" }), d)).kind).toBe("dead-letter");
    expect(published).toHaveLength(0);
  });

  it("asks for a redelivery while the batching queue is full", async () => {
    const { published, deps: d } = deps(async () => {
      throw new QueueFullError(4096, 1, 4096);
    });
    expect((await embedInterestMessage(stated({}), d)).kind).toBe("retry");
    expect(published).toHaveLength(0);
  });
});
