import type { Bus } from "@recsys/bus";
import { replayMessageId, replaySubject, republish } from "./dead-letter-stream.js";
import type { DeadLetter } from "./letters.js";

/** What became of one letter in a replay. */
export type ReplayOutcome = { sequence: number; cause: string } & (
  | { outcome: "replayed"; subject: string; stream: string; streamSequence: number }
  /** The broker dropped it: the same letter was replayed within the stream's duplicate window. */
  | { outcome: "duplicate"; subject: string }
  | { outcome: "dry-run"; subject: string; messageId: string }
  | { outcome: "unreplayable"; error: string }
);

/** Republishes one letter where its message came from (with `dryRun`, only says where); the letter stays. */
export async function replayLetter(bus: Bus, letter: DeadLetter, dryRun: boolean): Promise<ReplayOutcome> {
  const base = { sequence: letter.sequence, cause: letter.cause };
  const target = await replaySubject(bus, letter);
  if ("error" in target) return { ...base, outcome: "unreplayable", error: target.error };
  if (dryRun) return { ...base, outcome: "dry-run", subject: target.subject, messageId: replayMessageId(letter) };
  const ack = await republish(bus, letter, target.subject);
  if (ack.duplicate) return { ...base, outcome: "duplicate", subject: target.subject };
  return { ...base, outcome: "replayed", subject: target.subject, stream: ack.stream, streamSequence: ack.seq };
}

export function outcomeLine(o: ReplayOutcome): string {
  const letter = `#${o.sequence} ${o.cause}`;
  switch (o.outcome) {
    case "replayed":
      return `replayed       ${letter} to ${o.subject} (${o.stream} #${o.streamSequence})`;
    case "duplicate":
      return `already        ${letter}: replayed before within the broker's duplicate window, dropped`;
    case "dry-run":
      return `would replay   ${letter} to ${o.subject} as ${o.messageId}`;
    case "unreplayable":
      return `cannot replay  ${letter}: ${o.error}`;
  }
}

export function countOutcomes(outcomes: ReplayOutcome[]): Record<ReplayOutcome["outcome"], number> {
  const counts = { replayed: 0, duplicate: 0, "dry-run": 0, unreplayable: 0 };
  for (const o of outcomes) counts[o.outcome]++;
  return counts;
}
