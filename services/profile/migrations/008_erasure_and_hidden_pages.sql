-- Two things arrive on the bus that profile did not know before: a user's erasure (UserDeleted, on
-- CLICKS in the user's partition) and a page hidden from recommendations or shown again
-- (PageVisibility, on VISIBILITY).

-- Each url's latest visibility, versioned by its VISIBILITY stream sequence: a state older than the
-- stored one (a redelivery, a consumer started over) changes nothing. Shown pages keep their row,
-- so that an older "hidden" cannot come back after them. The recommending queries leave out the
-- hidden pages, read once per statement from the partial index (the set is small).
CREATE TABLE page_visibility (
  url text COLLATE "C" PRIMARY KEY,
  hidden boolean NOT NULL,
  seq bigint NOT NULL
);
CREATE INDEX page_visibility_hidden ON page_visibility (url) WHERE hidden;

-- Users erased, kept for good (one small row each): what a UserDeleted cut. `clicks_seq` is its
-- CLICKS stream sequence: a click of a message before it (a redelivery, a replay) is acked without
-- effect. `ingest_time_ms` is its ingest time: a like or stated interest accepted at or before it,
-- on a stream of its own, arrives late and is dropped. Both keep the greatest seen.
CREATE TABLE erased_users (
  userid text PRIMARY KEY,
  clicks_seq bigint NOT NULL,
  ingest_time_ms bigint NOT NULL
);

-- An erasure runs alone: it takes this lock exclusively, and every other write transaction (click
-- batches, embeddings, likes, interests) shares it before any other lock. So no write reads
-- erased_users before an erasure and then writes the user's rows after it was deleted (a click
-- batch's interest, an embedding folding the user's parked clicks). Shared locks do not wait for
-- each other; erasures are rare. A pair of int4 keys, another space than the url and id locks' bigint.
CREATE FUNCTION share_erasure_lock() RETURNS void
LANGUAGE sql AS $$
  SELECT pg_advisory_xact_lock_shared(hashtext('recsys-profile-erasure'), hashtext(current_schema()))
$$;

-- Erases a user as of the UserDeleted at CLICKS sequence p_seq: every row profile keeps of the user
-- goes (interest, page terms, parked clicks, likes, applied ids of every kind, watermarks) and the
-- erasure is recorded. false, and nothing changes, when an erasure at that sequence or a later one
-- is recorded already (a redelivery must not erase what the user did after it).
CREATE FUNCTION erase_user(p_userid text, p_seq bigint, p_ingest_time_ms bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('recsys-profile-erasure'), hashtext(current_schema()));
  INSERT INTO erased_users (userid, clicks_seq, ingest_time_ms) VALUES (p_userid, p_seq, p_ingest_time_ms)
  ON CONFLICT (userid) DO UPDATE SET clicks_seq = excluded.clicks_seq, ingest_time_ms = greatest(erased_users.ingest_time_ms, excluded.ingest_time_ms)
  WHERE erased_users.clicks_seq < excluded.clicks_seq;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  DELETE FROM interests WHERE userid = p_userid;
  DELETE FROM user_page_terms WHERE userid = p_userid;
  DELETE FROM parked_clicks WHERE userid = p_userid;
  DELETE FROM likes WHERE userid = p_userid;
  DELETE FROM applied_events WHERE userid = p_userid;
  DELETE FROM event_watermarks WHERE userid = p_userid;
  RETURN true;
END
$$;

-- apply_clicks of 007 with the erasure cut: a sixth argument, each click's CLICKS stream sequence
-- (NULL: never cut), and a fifth outcome, 'erased' (a click of a message before its user's
-- erasure: nothing changes). The batch's users are looked up in erased_users once, one index scan
-- for the batch. The five-argument version stays for a replica of the previous build during a rollout.
CREATE FUNCTION apply_clicks(p_event_ids text[], p_userids text[], p_urls text[], p_event_times_ms bigint[], p_seqs bigint[], p_retention_ms bigint) RETURNS text[]
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  url_lock bigint;
  outcomes text[];
BEGIN
  IF cardinality(p_userids) <> cardinality(p_event_ids) OR cardinality(p_urls) <> cardinality(p_event_ids)
     OR cardinality(p_event_times_ms) <> cardinality(p_event_ids) OR cardinality(p_seqs) <> cardinality(p_event_ids) THEN
    RAISE EXCEPTION 'apply_clicks: arrays of different lengths';
  END IF;
  -- No erasure runs meanwhile; the statements below see every one committed before.
  PERFORM share_erasure_lock();
  -- Every url's lock first, in one order (see 005).
  FOR url_lock IN SELECT DISTINCT hashtextextended(u, 0) FROM unnest(p_urls) AS u ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock(url_lock);
  END LOOP;

  -- Each user's watermark row, locked in userid order (interests are locked in that order too).
  PERFORM 1 FROM event_watermarks WHERE kind = 'click' AND userid IN (SELECT DISTINCT u FROM unnest(p_userids) AS u) ORDER BY userid FOR UPDATE;

  WITH every_click AS (
    SELECT * FROM unnest(p_event_ids, p_userids, p_urls, p_event_times_ms, p_seqs) WITH ORDINALITY AS c(event_id, userid, url, event_time_ms, seq, n)
  ),
  erasure AS MATERIALIZED (
    SELECT userid, clicks_seq FROM erased_users WHERE userid = ANY(p_userids)
  ),
  -- A click of a message before its user's erasure belongs to the user erased.
  erased AS (
    SELECT c.n FROM every_click c JOIN erasure e ON e.userid = c.userid WHERE c.seq < e.clicks_seq
  ),
  current_click AS (
    SELECT * FROM every_click c WHERE NOT EXISTS (SELECT FROM erased e WHERE e.n = c.n)
  ),
  -- A click older than its user's watermark (as it was before this call) by more than the
  -- retention is expired: its id may have been pruned, so it cannot be told from a duplicate.
  expired AS (
    SELECT c.n FROM current_click c JOIN event_watermarks w ON w.kind = 'click' AND w.userid = c.userid
    WHERE c.event_time_ms < w.watermark_ms - p_retention_ms
  ),
  click AS (
    SELECT * FROM current_click c WHERE NOT EXISTS (SELECT FROM expired e WHERE e.n = c.n)
  ),
  watermark AS (
    INSERT INTO event_watermarks (userid, kind, watermark_ms)
    SELECT userid, 'click', max(event_time_ms) FROM click GROUP BY userid ORDER BY userid
    ON CONFLICT (userid, kind) DO UPDATE SET watermark_ms = greatest(event_watermarks.watermark_ms, excluded.watermark_ms)
  ),
  -- The first click of each (user, id) not recorded before, in key order.
  recorded AS (
    INSERT INTO applied_events (userid, kind, event_id, event_time_ms)
    SELECT DISTINCT ON (c.userid, c.event_id) c.userid, 'click', c.event_id, c.event_time_ms FROM click c
    WHERE NOT EXISTS (SELECT FROM legacy_applied_events l WHERE l.event_id = c.event_id)
    ORDER BY c.userid, c.event_id, c.n
    ON CONFLICT DO NOTHING
    RETURNING userid, event_id
  ),
  -- The first click of each (user, id) recorded now; the others are duplicates.
  fresh AS (
    SELECT DISTINCT ON (c.userid, c.event_id) c.* FROM click c JOIN recorded r ON r.userid = c.userid AND r.event_id = c.event_id
    ORDER BY c.userid, c.event_id, c.n
  ),
  -- Fresh clicks of embedded pages, with the page's current embedding.
  folded AS (
    SELECT f.n, f.userid, f.url, p.embedding FROM fresh f JOIN content p ON p.url = f.url
  ),
  -- One update per user: the sum of the embeddings of all its clicks in the batch (a page clicked
  -- twice counts twice), in userid order, as the embedding transactions lock interests.
  interest AS (
    INSERT INTO interests (userid, sum, terms)
    SELECT userid, sum(embedding), count(*) FROM folded GROUP BY userid ORDER BY userid
    ON CONFLICT (userid) DO UPDATE SET sum = interests.sum + excluded.sum, terms = interests.terms + excluded.terms
  ),
  page_terms AS (
    INSERT INTO user_page_terms (userid, url, clicks)
    SELECT userid, url, count(*) FROM folded GROUP BY userid, url ORDER BY userid, url
    ON CONFLICT (userid, url) DO UPDATE SET clicks = user_page_terms.clicks + excluded.clicks
  ),
  parked AS (
    INSERT INTO parked_clicks (event_id, userid, url, event_time_ms)
    SELECT f.event_id, f.userid, f.url, f.event_time_ms FROM fresh f
    WHERE NOT EXISTS (SELECT FROM content p WHERE p.url = f.url) ORDER BY f.userid, f.event_id
  )
  SELECT array_agg(CASE WHEN r.n IS NOT NULL THEN 'erased' WHEN x.n IS NOT NULL THEN 'expired' WHEN f.n IS NULL THEN 'duplicate'
                        WHEN d.n IS NULL THEN 'parked' ELSE 'applied' END ORDER BY c.n)
  INTO outcomes
  FROM every_click c LEFT JOIN erased r ON r.n = c.n LEFT JOIN expired x ON x.n = c.n LEFT JOIN fresh f ON f.n = c.n LEFT JOIN folded d ON d.n = c.n;
  RETURN outcomes;
END
$$;
