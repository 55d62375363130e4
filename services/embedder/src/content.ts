import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { isWrongLastSequence, PublishFailedError, StreamFill, StreamReadFailedError, urlKey, type Bus } from "@recsys/bus";
import { ContentEmbeddingSchema, ContentPageSchema, type ContentEmbedding, type ContentPage } from "@recsys/contracts/events/v1/events";
import { numbers } from "./numbers.js";

/** The newest embedding of each url, as the EMBEDDINGS stream keeps it (one message per url). */
export interface EmbeddingsLog {
  /** The stored version of a url and its sequence in the log; undefined when the url has none. */
  newest(url: string): Promise<{ version: bigint; seq: number } | undefined>;
  /** Appends unless another message for the url landed after `afterSeq` (0: none yet); false on that conflict. */
  append(e: ContentEmbedding, afterSeq: number): Promise<boolean>;
}

export type PageVerdict =
  | { status: "embedded"; url: string; version: bigint }
  | { status: "stale"; url: string; version: bigint; newest: bigint }
  | { status: "undecodable"; error: string };

/** The text a page is embedded from. */
export function pageText(title: string, text: string): string {
  return `${title}\n${text}`;
}

/**
 * The effect of one CONTENT message: embed the page unless a version at least as new is already in the log, then append it,
 * guarded by the log's last sequence for that url, so that two versions racing through two replicas cannot leave the older one on top.
 */
export async function embedPageMessage(
  data: Uint8Array,
  deps: { log: EmbeddingsLog; embed: (text: string) => Promise<Float32Array>; model: string },
): Promise<PageVerdict> {
  let page: ContentPage;
  try {
    page = fromBinary(ContentPageSchema, data);
  } catch (err) {
    return { status: "undecodable", error: String(err) };
  }
  if (!page.url) return { status: "undecodable", error: "missing url" };
  let vector: Float32Array | undefined;
  for (;;) {
    const newest = await deps.log.newest(page.url);
    if (newest && newest.version >= page.sourceTimeMs) {
      return { status: "stale", url: page.url, version: page.sourceTimeMs, newest: newest.version };
    }
    vector ??= await deps.embed(pageText(page.title, page.text));
    const embedding = create(ContentEmbeddingSchema, {
      url: page.url,
      id: page.id,
      title: page.title,
      text: page.text,
      embedding: numbers(vector),
      version: page.sourceTimeMs,
      model: deps.model,
    });
    if (await deps.log.append(embedding, newest?.seq ?? 0)) return { status: "embedded", url: page.url, version: page.sourceTimeMs };
  }
}

/** EmbeddingsLog on the EMBEDDINGS stream: subject embeddings.<hash(url)>, one message kept per subject. */
export function jetStreamEmbeddingsLog(bus: Bus, fill?: StreamFill): EmbeddingsLog {
  const stream = bus.topology.embeddingsStream;
  return {
    async newest(url) {
      let m: Awaited<ReturnType<typeof bus.jsm.streams.getMessage>>;
      try {
        m = await bus.jsm.streams.getMessage(stream, { last_by_subj: bus.topology.embeddingsSubject(urlKey(url)) });
      } catch (err) {
        // A bus error, never the page's fault: the page waits (retried), as for a failed publish.
        throw new StreamReadFailedError(stream, err);
      }
      if (!m) return undefined;
      return { version: fromBinary(ContentEmbeddingSchema, m.data).version, seq: m.seq };
    },
    async append(e, afterSeq) {
      const subject = bus.topology.embeddingsSubject(urlKey(e.url));
      const payload = toBinary(ContentEmbeddingSchema, e);
      const msgID = `${urlKey(e.url)}-${e.version}`;
      // Throws StreamFullError at the configured size: the page waits (retried) until there is room.
      const giveBack = fill?.take(stream, StreamFill.sizeOf([{ subject, payload, msgID }]));
      try {
        await bus.publish(subject, payload, { msgID, expect: { lastSubjectSequence: afterSeq }, timeout: 10_000 });
        return true;
      } catch (err) {
        giveBack?.();
        if (isWrongLastSequence(err)) return false;
        throw new PublishFailedError(stream, err);
      }
    },
  };
}
