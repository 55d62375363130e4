import { create, toBinary } from "@bufbuild/protobuf";
import { ContentPageSchema, type ContentEmbedding } from "@recsys/contracts/events/v1/events";
import { describe, expect, it } from "vitest";
import { StreamReadFailedError, Topology, type Bus } from "@recsys/bus";
import { embedPageMessage, jetStreamEmbeddingsLog, pageText, type EmbeddingsLog } from "./content.js";
import { busFailure } from "./consumer.js";

/** The log as the EMBEDDINGS stream behaves: one message kept per url, appends guarded by the url's last sequence. */
class MemoryLog implements EmbeddingsLog {
  seq = 0;
  byUrl = new Map<string, { e: ContentEmbedding; seq: number }>();
  /** Runs once, between the next `newest` and `append`: another replica landing a version. */
  interleave?: () => void;
  async newest(url: string) {
    const hit = this.byUrl.get(url);
    const answer = hit ? { version: hit.e.version, seq: hit.seq } : undefined;
    const other = this.interleave;
    this.interleave = undefined;
    other?.();
    return answer;
  }
  async append(e: ContentEmbedding, afterSeq: number) {
    if ((this.byUrl.get(e.url)?.seq ?? 0) !== afterSeq) return false;
    this.byUrl.set(e.url, { e, seq: ++this.seq });
    return true;
  }
}

const page = (url: string, version: number, text = "body") =>
  toBinary(ContentPageSchema, create(ContentPageSchema, { eventId: `${url}-${version}`, url, id: "7", title: "Title", text, sourceTimeMs: BigInt(version) }));

function deps(log: EmbeddingsLog) {
  const embedded: string[] = [];
  return {
    embedded,
    deps: { log, model: "m", embed: async (t: string) => (embedded.push(t), Float32Array.of(t.length, 0)) },
  };
}

describe("embedPageMessage", () => {
  it("embeds title, a newline and the text, and stores the page with its version and model", async () => {
    const log = new MemoryLog();
    const { embedded, deps: d } = deps(log);
    expect(await embedPageMessage(page("https://e.org/a", 5, "hello"), d)).toEqual({ status: "embedded", url: "https://e.org/a", version: 5n });
    expect(embedded).toEqual(["Title\nhello"]);
    expect(pageText("Title", "hello")).toBe("Title\nhello");
    const stored = log.byUrl.get("https://e.org/a")!.e;
    expect(stored).toMatchObject({ url: "https://e.org/a", id: "7", title: "Title", text: "hello", version: 5n, model: "m", embedding: [11, 0] });
  });

  it("keeps only the newest version: an older or equal one is not even embedded", async () => {
    const log = new MemoryLog();
    const { embedded, deps: d } = deps(log);
    await embedPageMessage(page("https://e.org/a", 10, "new"), d);
    expect((await embedPageMessage(page("https://e.org/a", 9, "old"), d)).status).toBe("stale");
    expect((await embedPageMessage(page("https://e.org/a", 10, "new"), d)).status).toBe("stale");
    expect(embedded).toEqual(["Title\nnew"]);
    expect(log.byUrl.get("https://e.org/a")!.e.text).toBe("new");
    await embedPageMessage(page("https://e.org/a", 11, "newer"), d);
    expect(log.byUrl.get("https://e.org/a")!.e.text).toBe("newer");
  });

  it("loses a race to a newer version landing between its check and its append, and leaves that version on top", async () => {
    const log = new MemoryLog();
    const { deps: d } = deps(log);
    log.interleave = () => void log.append({ url: "https://e.org/a", version: 20n, text: "racer" } as ContentEmbedding, 0);
    expect((await embedPageMessage(page("https://e.org/a", 15, "slow"), d)).status).toBe("stale");
    expect(log.byUrl.get("https://e.org/a")!.e.text).toBe("racer");
  });

  it("wins a race against an older version by checking again", async () => {
    const log = new MemoryLog();
    const { deps: d } = deps(log);
    log.interleave = () => void log.append({ url: "https://e.org/a", version: 3n, text: "older" } as ContentEmbedding, 0);
    expect((await embedPageMessage(page("https://e.org/a", 15, "mine"), d)).status).toBe("embedded");
    expect(log.byUrl.get("https://e.org/a")!.e.text).toBe("mine");
  });

  it("calls bytes that are not a page undecodable", async () => {
    const { deps: d } = deps(new MemoryLog());
    expect((await embedPageMessage(Uint8Array.of(0xff, 0xff, 0xff), d)).status).toBe("undecodable");
  });
});

describe("a read of EMBEDDINGS that fails", () => {
  it("is a bus failure: the page is retried, never dead-lettered as a poison message", async () => {
    // The stream's leader away (a rolling restart of a cluster): JetStream's direct get times out.
    const bus = {
      topology: new Topology("unit"),
      jsm: {
        streams: {
          getMessage: async () => {
            throw new Error("TIMEOUT");
          },
        },
      },
    } as unknown as Bus;
    const { deps: d } = deps(jetStreamEmbeddingsLog(bus));
    const err = await embedPageMessage(page("https://e.org/a", 5), d).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StreamReadFailedError);
    expect(busFailure(err)).toMatchObject({ kind: "retry", reason: expect.stringMatching(/^reading UNIT_EMBEDDINGS failed: Error: TIMEOUT/) });
  });
});
