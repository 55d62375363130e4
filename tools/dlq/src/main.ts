#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from "commander";
import { pino } from "pino";
import { connectBus, DUPLICATE_WINDOW_MS, natsAuthFrom, type Bus } from "@recsys/bus";
import { commonEnv, readConfig, z } from "@recsys/config";
import { deadLetterAt, selectedLetters } from "./dead-letter-stream.js";
import { countByCause, letterLine, sinceTime, type DeadLetter, type Selection } from "./letters.js";
import { letterText, payloadOf } from "./payload.js";
import { countOutcomes, outcomeLine, replayLetter, type ReplayOutcome } from "./replay.js";

const config = readConfig(
  z.object({
    NATS_URL: commonEnv.NATS_URL,
    NATS_USER: commonEnv.NATS_USER,
    NATS_PASSWORD: commonEnv.NATS_PASSWORD,
    RECSYS_NAMESPACE: commonEnv.RECSYS_NAMESPACE,
  }),
);

function sequenceNumber(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError("a dead letter's sequence is a whole number >= 1");
  return n;
}
function since(v: string): number {
  try {
    return sinceTime(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

interface Filters {
  cause?: string;
  source?: string;
  since?: number;
}
const selectionOf = (o: Filters, sequences?: number[]): Selection => ({ cause: o.cause, source: o.source, sinceMs: o.since, sequences });

/** Runs `work` with a bus of the configured namespace; NATS' own warnings go to stderr, so stdout stays the answer. */
async function withBus(work: (bus: Bus) => Promise<void>): Promise<void> {
  const logger = pino({ name: "dlq", level: process.env.LOG_LEVEL ?? "warn" }, pino.destination(2));
  const bus = await connectBus({ url: config.NATS_URL, name: "dlq", namespace: config.RECSYS_NAMESPACE, logger, auth: natsAuthFrom(config) });
  try {
    await work(bus);
  } finally {
    await bus.close();
  }
}

/** A letter without its headers and data, for JSON. */
const summaryOf = ({ headers: _headers, data: _data, ...rest }: DeadLetter) => rest;
const write = (text: string) => process.stdout.write(`${text}\n`);

const causeOption = () => new Option("--cause <cause>", "only letters of this cause: late, undecodable, refused, poison");
const sourceOption = () =>
  new Option(
    "--source <source>",
    "only letters filed under dlq.<source>: clicks (covisit); content, interests (embedder); profile-clicks, likes, embeddings, interest-embeddings (profile)",
  );
const sinceOption = () =>
  new Option("--since <time>", "only letters dead-lettered since an ISO time (2026-01-02T10:00:00Z) or a duration ago (30m, 1h, 2d)").argParser(since);

const program = new Command("dlq").description(
  "Reads and replays the dead letters in DEAD_LETTERS: messages a consumer could not apply, kept with why. Reads NATS_URL, NATS_USER, NATS_PASSWORD (the admin user where NATS has users) and RECSYS_NAMESPACE like the services.",
);

program
  .command("list")
  .description("Lists dead letters, oldest first: sequence, time, cause, who filed it, the source message, the reason; then the count per cause.")
  .addOption(causeOption())
  .addOption(sourceOption())
  .addOption(sinceOption())
  .option("--json", "one JSON document: the letters (without data) and the count per cause", false)
  .action(async (o: Filters & { json: boolean }) => {
    await withBus(async (bus) => {
      const letters: DeadLetter[] = [];
      for await (const letter of selectedLetters(bus, selectionOf(o), { headersOnly: true })) {
        letters.push(letter);
        if (!o.json) write(letterLine(letter));
      }
      const byCause = countByCause(letters);
      if (o.json) return void write(JSON.stringify({ letters: letters.map(summaryOf), byCause }));
      const counts = Object.entries(byCause).map(([cause, n]) => `${cause} ${n}`);
      write(`${letters.length} dead letters${counts.length ? `: ${counts.join(", ")}` : ""}`);
    });
  });

program
  .command("show")
  .description("Shows one dead letter: its headers and its data, decoded as the bus message it is where possible (else text, else hex).")
  .argument("<seq>", "its sequence in DEAD_LETTERS, as `list` shows it", sequenceNumber)
  .option("--json", "as one JSON document", false)
  .action(async (seq: number, o: { json: boolean }) => {
    await withBus(async (bus) => {
      const letter = await deadLetterAt(bus, seq);
      if (!letter) throw new Error(`no dead letter #${seq} in ${bus.topology.deadLetterStream}`);
      const payload = payloadOf(letter, bus.topology.clicksStream);
      write(o.json ? JSON.stringify({ ...summaryOf(letter), headers: letter.headers, payload }) : letterText(letter, payload));
    });
  });

program
  .command("replay")
  .description(
    "Republishes the selected dead letters to the subject their message came from, with its content-type, after the cause was fixed. " +
      "The letters stay in DEAD_LETTERS (replay deletes nothing). Safe to repeat: each replay has the message id dlq-replay-<seq>, " +
      `so the broker drops a repeat within its duplicate window (${DUPLICATE_WINDOW_MS / 60_000} minutes), and the consumers skip clicks and events they already applied.`,
  )
  .argument("[seq...]", "only the letters at these sequences", (v: string, prev: number[] = []) => [...prev, sequenceNumber(v)])
  .addOption(causeOption())
  .addOption(sourceOption())
  .addOption(sinceOption())
  .option("--all", "every letter, when no sequence, cause, source or time selects them", false)
  .option("--dry-run", "say what would be republished where, publish nothing", false)
  .option("--json", "one JSON document: each letter's outcome and the count per outcome", false)
  .action(async (sequences: number[] | undefined, o: Filters & { all: boolean; dryRun: boolean; json: boolean }) => {
    const s = selectionOf(o, sequences);
    if (!s.sequences?.length && s.cause === undefined && s.source === undefined && s.sinceMs === undefined && !o.all) {
      program.error("replay: select letters by sequence, --cause, --source or --since, or say --all");
    }
    await withBus(async (bus) => {
      const outcomes: ReplayOutcome[] = [];
      for await (const letter of selectedLetters(bus, s, { headersOnly: false })) {
        const outcome = await replayLetter(bus, letter, o.dryRun);
        outcomes.push(outcome);
        if (!o.json) write(outcomeLine(outcome));
      }
      const counts = countOutcomes(outcomes);
      if (o.json) write(JSON.stringify({ letters: outcomes, counts }));
      else if (o.dryRun) write(`would replay ${counts["dry-run"]}, cannot replay ${counts.unreplayable}; nothing published`);
      else
        write(
          `replayed ${counts.replayed}, dropped as repeats ${counts.duplicate}, cannot replay ${counts.unreplayable}; the letters stay in ${bus.topology.deadLetterStream}`,
        );
      if (counts.unreplayable > 0) process.exitCode = 1;
    });
  });

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`dlq: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
