import type pg from "pg";
import { forgetSilentUsers, pruneAppliedEvents } from "./applied-events.js";
import { applyClicks, expireParkedClicks } from "./clicks.js";
import { applyEmbedding } from "./embeddings.js";
import { eraseUser } from "./erasures.js";
import { applyInterest } from "./interests.js";
import { applyLike } from "./likes.js";
import { cancellable } from "./cancellable.js";
import * as reads from "./reads.js";
import { replicaCaughtUp } from "./replica.js";
import { Sessions } from "./sessions.js";
import { applyVisibility } from "./visibility.js";
import {
  DEFAULT_DEDUP_RETENTION_MS,
  type ClickAt,
  type ClickOutcome,
  type EmbeddingOutcome,
  type EventRow,
  type Interest,
  type InterestOutcome,
  type InterestToApply,
  type LikeOutcome,
  type LikeToApply,
  type PageEmbedding,
  type PageVisibility,
  type SimilarPage,
  type UserErasure,
} from "./types.js";

/** Pages, interests and parked clicks in PostgreSQL; every update is one transaction. */
export class ProfileStore {
  private readonly sessions: Sessions;

  constructor(
    private readonly pool: pg.Pool,
    /** How far behind its user's latest event an event may be and still be told from a duplicate (see migration 007). */
    private readonly dedupRetentionMs: number = DEFAULT_DEDUP_RETENTION_MS,
    /** The streaming replica the queries read from, when they do (READ_DATABASE_URL). */
    private readonly readReplica?: pg.Pool,
  ) {
    this.sessions = new Sessions(pool);
  }

  /**
   * Waits until the read replica (if any) has replayed every write committed so far: an erasure or a hiding is acked (and so
   * reported applied to whoever waits for it) only once reads from the replica see it. Throws when the replica lags past its wait.
   */
  async replicated(): Promise<void> {
    if (this.readReplica) await replicaCaughtUp(this.pool, this.readReplica);
  }

  /**
   * Folds one click into its user's interest, or parks it until its page is embedded: a batch of one.
   */
  async applyClick(click: ClickAt): Promise<ClickOutcome> {
    return (await this.applyClicks([click]))[0]!;
  }

  /**
   * `applyClick` for each click, as if one after the other, in one transaction and one round trip (apply_clicks); outcomes in order.
   * Serialized per url with `applyEmbedding`, so a click is never parked after its page's parked clicks were folded. A click whose
   * `seq` is before its user's erasure is "erased".
   */
  applyClicks(clicks: readonly ClickAt[]): Promise<ClickOutcome[]> {
    return applyClicks(this.sessions, clicks, this.dedupRetentionMs);
  }

  /**
   * Stores a page's embedding if its version is newer than the stored one, and folds in the clicks and likes waiting for the page.
   * A new embedding of a known page corrects its users' sums by terms × (new − old): interests stay the mean of the current embeddings.
   */
  applyEmbedding(version: PageEmbedding): Promise<EmbeddingOutcome> {
    return applyEmbedding(this.sessions, version);
  }

  /**
   * Stores the like state of (user, page id) unless a later one is stored; a like adds the page's embedding as a term, an unlike takes it out.
   * A like of a page not embedded yet is kept and folded in when the page arrives.
   */
  applyLike(like: LikeToApply): Promise<LikeOutcome> {
    return applyLike(this.sessions, like);
  }

  /** Adds a stated interest's embedding as a term of the user's interest, once per (user, event id). */
  applyInterest(interest: InterestToApply): Promise<InterestOutcome> {
    return applyInterest(this.sessions, interest, this.dedupRetentionMs);
  }

  /**
   * Deletes every row of the user (interest, page terms, parked clicks, likes, applied ids, watermarks) and records the erasure, in
   * one transaction that no other write overlaps; "superseded" (nothing changed) when one at `seq` or later is recorded already.
   */
  eraseUser(erasure: UserErasure): Promise<"erased" | "superseded"> {
    return eraseUser(this.sessions, erasure);
  }

  /** Stores a url's visibility unless a later state (by VISIBILITY sequence) is stored: "stale" then. */
  applyVisibility(visibility: PageVisibility): Promise<"applied" | "stale"> {
    return applyVisibility(this.pool, visibility);
  }

  /** Deletes the applied ids past their users' horizons (migration 007); returns how many. */
  pruneAppliedEvents(): Promise<number> {
    return pruneAppliedEvents(this.pool, this.dedupRetentionMs);
  }

  /**
   * Forgets at most `limit` (user, kind) pairs not heard from for the retention (wall clock), the longest silent first: their
   * watermarks and applied ids, so that users who never come back leave nothing behind (migration 009). A user with a parked
   * click is kept until it is applied or expires. Returns how many pairs and ids went.
   */
  forgetSilentUsers(limit: number): Promise<{ users: number; ids: number }> {
    return forgetSilentUsers(this.pool, this.dedupRetentionMs, limit);
  }

  /**
   * Deletes the clicks parked longer than `maxAgeMs` with their ids, so the same click sent once its page exists is applied; returns how many.
   * A url whose page is being stored (its lock is held) waits for the next pass, so a click is never both folded and dropped.
   */
  expireParkedClicks(maxAgeMs: number): Promise<number> {
    return expireParkedClicks(this.pool, maxAgeMs);
  }

  /** A page of pages in id order (ID_ORDER), from `offset` or after `after`. */
  events(limit: number, offset: number, after?: reads.EventKey, signal?: AbortSignal): Promise<reads.EventPage> {
    return cancellable(this.pool, signal, (db) => reads.events(db, limit, offset, after));
  }

  /** The pages carrying these ids, in id order. */
  eventsById(ids: string[], signal?: AbortSignal): Promise<EventRow[]> {
    return cancellable(this.pool, signal, (db) => reads.eventsById(db, ids));
  }

  /** A page of the pages whose latest like by the user is a like, in id order, from `offset` or after `after`. */
  eventsLiked(userid: string, limit = 1000, offset = 0, after?: reads.EventKey, signal?: AbortSignal): Promise<reads.EventPage> {
    return cancellable(this.pool, signal, (db) => reads.eventsLiked(db, userid, limit, offset, after));
  }

  /** Pages by cosine similarity to the user's interest, desc, then url asc, without the ones the user has seen unless `includeSeen`; none for a user without one. */
  recommendedEvents(userid: string, limit: number, includeSeen = false, signal?: AbortSignal): Promise<EventRow[]> {
    return cancellable(this.pool, signal, (db) => reads.recommendedEvents(db, userid, limit, includeSeen));
  }

  /** Pages by cosine similarity to the page at `url`, desc, then url asc, never itself (nor, with a userid, the user's seen ones); undefined for an unknown url. */
  relatedContent(url: string, limit: number, userid = "", signal?: AbortSignal): Promise<SimilarPage[] | undefined> {
    return cancellable(this.pool, signal, (db) => reads.relatedContent(db, url, limit, userid));
  }

  /**
   * Pages whose title or text match `query` (websearch_to_tsquery, English), by similarity to the
   * user's interest (0 without one), then by text rank, then url.
   */
  personalizedEventSearch(query: string, userid: string, limit: number, signal?: AbortSignal): Promise<EventRow[]> {
    return cancellable(this.pool, signal, (db) => reads.personalizedEventSearch(db, query, userid, limit));
  }

  /** Pages by cosine similarity to the user's interest, desc, then url asc, without the ones the user has seen unless `includeSeen`; similarity 0 without one. */
  async similarContent(userid: string, limit: number, includeSeen = false, signal?: AbortSignal): Promise<SimilarPage[]> {
    return (await this.similarContentMany([{ userid, limit, includeSeen }], signal))[0]!;
  }

  /**
   * `similarContent` for several users in one statement, answers in order: an exact scan, since results must equal a brute-force ranking.
   * Page embeddings are unit vectors, so the scan computes only the inner product (pgvector's <#> is its negative).
   */
  similarContentMany(requests: ReadonlyArray<reads.SimilarContentAsk>, signal?: AbortSignal): Promise<SimilarPage[][]> {
    return cancellable(this.pool, signal, (db) => reads.similarContentMany(db, requests));
  }

  /** Whether profile holds anything of the user, and whether it stores the page; "" asks nothing (false). */
  exists(userid: string, url: string, signal?: AbortSignal): Promise<{ user: boolean; page: boolean }> {
    return cancellable(this.pool, signal, (db) => reads.exists(db, userid, url));
  }

  /** The interest behind a user's recommendations, or undefined when the user has none. */
  interest(userid: string): Promise<Interest | undefined> {
    return reads.interest(this.sessions, userid);
  }

  /** The stored like state of (user, page id), or undefined. */
  like(userid: string, pageId: string): Promise<{ liked: boolean; appliedUrl: string | null } | undefined> {
    return reads.like(this.pool, userid, pageId);
  }

  counts(): Promise<{ pages: bigint; parkedClicks: bigint }> {
    return reads.counts(this.pool);
  }

  async ping(): Promise<boolean> {
    await this.pool.query("SELECT 1");
    return true;
  }
}
