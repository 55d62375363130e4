/** The domain types the profile store speaks: what is applied, what it answers. */
import type { ClickToApply } from "@recsys/bus";

/** A click as the bus reads it. */
export type { ClickToApply };

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
}

export interface InterestToApply {
  eventId: string;
  userid: string;
  /** L2-normalized, of the configured dimension. */
  embedding: number[];
  sourceTimeMs: bigint;
}

/** "expired": older than its user's latest click by more than the retention; refused, nothing changed. */
export type ClickOutcome = { status: "applied" } | { status: "parked" } | { status: "duplicate" } | { status: "expired" };
/** "applied": the state changed (its term added, removed, or waiting for the page); "superseded": a later like of the pair is stored. */
export type LikeOutcome = { status: "applied" } | { status: "superseded" } | { status: "duplicate" } | { status: "expired" };
export type InterestOutcome = { status: "applied" } | { status: "duplicate" } | { status: "expired" };

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
