import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { headers, type Bus } from "@recsys/bus";
import { letterOf, selected, type DeadLetter, type Selection } from "./letters.js";

/** The namespace's `dlq.` prefix: a letter's subject is this and the name of who filed it. */
const prefixOf = (bus: Bus) => bus.topology.deadLetterSubject("");

/**
 * Every letter in DEAD_LETTERS, oldest first, as the stream holds them when called (an ordered
 * consumer: nothing is acked or removed). `headersOnly` leaves the data behind, for listing.
 */
export async function* deadLetters(bus: Bus, opts: { headersOnly: boolean }): AsyncGenerator<DeadLetter> {
  const stream = bus.topology.deadLetterStream;
  if ((await bus.jsm.streams.info(stream)).state.messages === 0) return;
  const consumer = await bus.js.consumers.get(stream, { headers_only: opts.headersOnly });
  const messages = await consumer.consume();
  try {
    for await (const m of messages) {
      yield letterOf({ seq: m.seq, time: m.time, subject: m.subject, headers: m.headers, data: m.data }, prefixOf(bus));
      if (m.info.pending === 0) return;
    }
  } finally {
    await messages.close();
  }
}

/** The letter at this sequence of DEAD_LETTERS, or null when there is none. */
export async function deadLetterAt(bus: Bus, sequence: number): Promise<DeadLetter | null> {
  const m = await bus.jsm.streams.getMessage(bus.topology.deadLetterStream, { seq: sequence });
  return m && letterOf({ seq: m.seq, time: m.time, subject: m.subject, headers: m.header, data: m.data }, prefixOf(bus));
}

/** The selected letters: those at the selection's sequences, else every letter of the stream, narrowed by its filters. */
export async function* selectedLetters(bus: Bus, s: Selection, opts: { headersOnly: boolean }): AsyncGenerator<DeadLetter> {
  if (!s.sequences?.length) {
    for await (const letter of deadLetters(bus, opts)) if (selected(letter, s)) yield letter;
    return;
  }
  for (const seq of s.sequences) {
    const letter = await deadLetterAt(bus, seq);
    if (!letter) throw new Error(`no dead letter #${seq} in ${bus.topology.deadLetterStream}`);
    if (selected(letter, s)) yield letter;
  }
}

/**
 * Where a replay republishes a letter: the subject its source message had.
 * An older letter without that header names its source message, whose subject is read from the source stream while it holds it.
 */
export async function replaySubject(bus: Bus, letter: DeadLetter): Promise<{ subject: string } | { error: string }> {
  const subject = letter.sourceSubject ?? (await sourceSubjectInStream(bus, letter));
  if (!subject)
    return {
      error:
        letter.sourceStream && letter.sourceSequence !== null
          ? `it names no source subject and ${letter.sourceStream} no longer holds #${letter.sourceSequence}`
          : "it names no source stream and sequence",
    };
  // A stream that keeps the newest message per subject (EMBEDDINGS) would drop a newer message for the replayed one.
  if (letter.sourceStream && (await bus.jsm.streams.info(letter.sourceStream)).config.max_msgs_per_subject > 0) {
    const newest = await bus.jsm.streams.getMessage(letter.sourceStream, { last_by_subj: subject });
    if (newest && newest.seq !== letter.sourceSequence)
      return { error: `${letter.sourceStream} keeps the newest message of ${subject}, #${newest.seq}, which a replay would replace` };
  }
  return { subject };
}

async function sourceSubjectInStream(bus: Bus, letter: DeadLetter): Promise<string | null> {
  if (!letter.sourceStream || letter.sourceSequence === null) return null;
  try {
    return (await bus.jsm.streams.getMessage(letter.sourceStream, { seq: letter.sourceSequence }))?.subject ?? null;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return null;
    throw err;
  }
}

/** The broker's id of a letter's replay: the same letter replayed again within the duplicate window is dropped. */
export const replayMessageId = (letter: DeadLetter) => `dlq-replay-${letter.sequence}`;

/**
 * Republishes a letter's data to `subject` with its content-type, under `replayMessageId`. The
 * letter stays in DEAD_LETTERS. `duplicate`: the broker dropped it as the repeat of a replay.
 */
export async function republish(bus: Bus, letter: DeadLetter, subject: string): Promise<{ stream: string; seq: number; duplicate: boolean }> {
  const h = headers();
  if (letter.contentType) h.set("content-type", letter.contentType);
  h.set("recsys-replay-of", `${bus.topology.deadLetterStream} #${letter.sequence}`);
  const ack = await bus.publish(subject, letter.data, { headers: h, msgID: replayMessageId(letter) });
  return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
}
