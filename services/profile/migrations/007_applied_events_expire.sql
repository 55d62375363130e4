-- Applied event ids expire, by a horizon per user and kind, in event time: covisit's rule for its
-- own ids. A user's watermark is the latest time of its events of a kind applied so far; ids of
-- events older than the watermark minus the retention (DEDUP_RETENTION_MS, 7 days by default) are
-- deleted by prune_applied_events, and an event that old is refused as "expired" before it is
-- looked up, so that a replay can never apply twice what was pruned: an id is pruned only once the
-- watermark is past its time by the retention, and from then on its event is refused. A user's
-- events arriving in order are never expired (each is at or past the watermark); a crash's
-- redelivery comes back minutes later in event time, far within the retention.
CREATE TABLE event_watermarks (
  userid text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('click', 'like', 'interest')),
  watermark_ms bigint NOT NULL,
  PRIMARY KEY (userid, kind)
);
INSERT INTO event_watermarks (userid, kind, watermark_ms)
SELECT userid, kind, max(event_time_ms) FROM applied_events GROUP BY userid, kind;

-- legacy_applied_events (ids recorded before they were per user) is kept whole: it gains no rows,
-- and its ids name no user whose watermark could tell when they may go.

-- apply_clicks of 006 with the retention: a fifth argument, and a fourth outcome, 'expired'. The
-- four-argument version stays for a replica of the previous build during a rollout.
CREATE FUNCTION apply_clicks(p_event_ids text[], p_userids text[], p_urls text[], p_event_times_ms bigint[], p_retention_ms bigint) RETURNS text[]
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  url_lock bigint;
  outcomes text[];
BEGIN
  IF cardinality(p_userids) <> cardinality(p_event_ids) OR cardinality(p_urls) <> cardinality(p_event_ids)
     OR cardinality(p_event_times_ms) <> cardinality(p_event_ids) THEN
    RAISE EXCEPTION 'apply_clicks: arrays of different lengths';
  END IF;
  -- Every url's lock first, in one order (see 005).
  FOR url_lock IN SELECT DISTINCT hashtextextended(u, 0) FROM unnest(p_urls) AS u ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock(url_lock);
  END LOOP;

  -- Each user's watermark row, locked in userid order (interests are locked in that order too).
  PERFORM 1 FROM event_watermarks WHERE kind = 'click' AND userid IN (SELECT DISTINCT u FROM unnest(p_userids) AS u) ORDER BY userid FOR UPDATE;

  WITH every_click AS (
    SELECT * FROM unnest(p_event_ids, p_userids, p_urls, p_event_times_ms) WITH ORDINALITY AS c(event_id, userid, url, event_time_ms, n)
  ),
  -- A click older than its user's watermark (as it was before this call) by more than the
  -- retention is expired: its id may have been pruned, so it cannot be told from a duplicate.
  expired AS (
    SELECT c.n FROM every_click c JOIN event_watermarks w ON w.kind = 'click' AND w.userid = c.userid
    WHERE c.event_time_ms < w.watermark_ms - p_retention_ms
  ),
  click AS (
    SELECT * FROM every_click c WHERE NOT EXISTS (SELECT FROM expired e WHERE e.n = c.n)
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
  SELECT array_agg(CASE WHEN x.n IS NOT NULL THEN 'expired' WHEN f.n IS NULL THEN 'duplicate' WHEN d.n IS NULL THEN 'parked' ELSE 'applied' END ORDER BY c.n)
  INTO outcomes
  FROM every_click c LEFT JOIN expired x ON x.n = c.n LEFT JOIN fresh f ON f.n = c.n LEFT JOIN folded d ON d.n = c.n;
  RETURN outcomes;
END
$$;

-- A like's or an interest's id, recorded unless its user applied it before ('duplicate') or it is
-- older than the user's watermark of its kind by more than the retention ('expired'); 'fresh' else.
-- A null retention never expires (likes: a like is versioned by its source time, so one applied
-- before and pruned is superseded by the stored state anyway).
CREATE FUNCTION record_applied(p_userid text, p_kind text, p_event_id text, p_event_time_ms bigint, p_retention_ms bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  mark bigint;
BEGIN
  SELECT watermark_ms INTO mark FROM event_watermarks WHERE userid = p_userid AND kind = p_kind FOR UPDATE;
  IF mark IS NOT NULL AND p_retention_ms IS NOT NULL AND p_event_time_ms < mark - p_retention_ms THEN
    RETURN 'expired';
  END IF;
  IF EXISTS (SELECT FROM legacy_applied_events WHERE event_id = p_kind || ':' || p_event_id) THEN
    RETURN 'duplicate';
  END IF;
  INSERT INTO applied_events (userid, kind, event_id, event_time_ms) VALUES (p_userid, p_kind, p_event_id, p_event_time_ms)
  ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN
    RETURN 'duplicate';
  END IF;
  INSERT INTO event_watermarks (userid, kind, watermark_ms) VALUES (p_userid, p_kind, p_event_time_ms)
  ON CONFLICT (userid, kind) DO UPDATE SET watermark_ms = greatest(event_watermarks.watermark_ms, excluded.watermark_ms);
  RETURN 'fresh';
END
$$;

-- Deletes the ids past their users' horizons; returns how many rows went.
CREATE FUNCTION prune_applied_events(p_retention_ms bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  pruned bigint;
BEGIN
  DELETE FROM applied_events a USING event_watermarks w
  WHERE a.userid = w.userid AND a.kind = w.kind AND a.event_time_ms < w.watermark_ms - p_retention_ms;
  GET DIAGNOSTICS pruned = ROW_COUNT;
  RETURN pruned;
END
$$;
