/** The domain types the profile store speaks: what is applied, what it answers. */
import type { ClickToApply } from "@recsys/bus";

/** A click as the bus reads it. */
export type { ClickToApply };

/** A click with the CLICKS stream sequence of its message: one before its user's erasure is cut. Without one, never. */
export type ClickAt = ClickToApply & { seq?: number };

/** A UserDeleted as profile applies it: its CLICKS stream sequence and its ingest time cut what the user did before. */
export interface UserErasure {
  userid: string;
  seq: number;
  ingestTimeMs: number;
}

/** A page hidden from recommendations or shown again, at its VISIBILITY stream sequence: the state of the greatest wins. */
export interface PageVisibility {
  url: string;
  hidden: boolean;
  seq: number;
}

export interface PageEmbedding {
  url: string;
  id: string;
  title: string;
  text: string;
  /** L2-normalized, of the configured dimension. */
  embedding: number[];
  version: bigint;
  model: string;
}

export interface LikeToApply {
  eventId: string;
  userid: string;
  pageId: string;
  liked: boolean;
  sourceTimeMs: bigint;
  /** When ingest accepted it (0 or absent: not carried); at or before its user's erasure, it is dropped. */
  ingestTimeMs?: bigint;
}

export interface InterestToApply {
  eventId: string;
  userid: string;
  /** L2-normalized, of the configured dimension. */
  embedding: number[];
  sourceTimeMs: bigint;
  /** The StatedInterest's ingest time (0 or absent: not carried); at or before its user's erasure, it is dropped. */
  ingestTimeMs?: bigint;
}

/**
 * "expired": older than its user's latest click by more than the retention; refused, nothing changed.
 * "erased": of a message before its user's erasure; nothing changed.
 */
export type ClickOutcome = { status: "applied" } | { status: "parked" } | { status: "duplicate" } | { status: "expired" } | { status: "erased" };
/**
 * "applied": the state changed (its term added, removed, or waiting for the page); "superseded": a later like of the pair is stored;
 * "erased": accepted at or before its user's erasure, nothing changed.
 */
export type LikeOutcome = { status: "applied" } | { status: "superseded" } | { status: "duplicate" } | { status: "expired" } | { status: "erased" };
export type InterestOutcome = { status: "applied" } | { status: "duplicate" } | { status: "expired" } | { status: "erased" };

/** Applied event ids are kept this long in event time behind their user's latest event of the kind (covisit's DEDUP_RETENTION_MS too). */
export const DEFAULT_DEDUP_RETENTION_MS = 7 * 24 * 3600_000;
export type EmbeddingOutcome =
  | { status: "inserted"; foldedClicks: number }
  | { status: "updated"; correctedUsers: number; foldedClicks: number }
  | { status: "stale"; storedVersion: bigint };

/** A page as the event queries return it. */
export interface EventRow {
  id: string;
  url: string;
  title: string;
  abstract: string;
  likeCount: number;
  score: number;
}

export interface SimilarPage {
  url: string;
  title: string;
  similarity: number;
}

/** The interest behind a user's recommendations: the sum of its terms' embeddings, and how many. */
export interface Interest {
  sum: number[];
  terms: number;
}
