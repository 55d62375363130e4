import { createHash } from "node:crypto";

/**
 * The deterministic id of an event from the fields that make it the same event: the first 32 hex
 * digits of sha-256 of their JSON array, so fields cannot bleed into each other.
 */
export function eventIdOf(parts: unknown[]): string {
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 32);
}

/** The subject partition of a key: the first 4 bytes of its sha-256, mod the partitions. */
export function partitionOf(key: string, partitions: number): number {
  return createHash("sha256").update(key).digest().readUInt32BE(0) % partitions;
}
