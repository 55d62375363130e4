-- Event ids are the clients' own and unique only per user and kind (a phone numbers its events 1,
-- 2, 3…). applied_events was keyed by the id alone, for every user: one user's "e1" made every
-- other user's "e1" a duplicate, and a click with the id "like:L1" blocked the like "L1". Applied
-- ids are now recorded per (user, kind, id).
--
-- The rows recorded before say neither user nor kind (a like's id was stored as "like:<id>", an
-- interest's as "interest:<id>", a click's as it came). Those that can be attributed move to the
-- new table: parked clicks (their row names the user) and the likes stored as a user's latest like
-- state (each stored in the transaction that recorded its id). The others stay in
-- legacy_applied_events and still count as applied, in their old form, for every user: a message
-- from before this migration redelivered or replayed after it remains a duplicate. Only ids used
-- before the migration can still collide across users that way; new ids never do.
ALTER TABLE applied_events RENAME TO legacy_applied_events;
ALTER INDEX applied_events_pkey RENAME TO legacy_applied_events_pkey;

CREATE TABLE applied_events (
  userid text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('click', 'like', 'interest')),
  event_id text NOT NULL,
  -- The event's own time (a click's event_time, a like's or an interest's source_time), so that the
  -- records can be expired by a horizon per user.
  event_time_ms bigint NOT NULL,
  PRIMARY KEY (userid, kind, event_id)
);

-- Two users' clicks with one id may both wait for their page.
ALTER TABLE parked_clicks DROP CONSTRAINT parked_clicks_pkey, ADD PRIMARY KEY (userid, event_id);

INSERT INTO applied_events (userid, kind, event_id, event_time_ms)
SELECT p.userid, 'click', p.event_id, p.event_time_ms FROM parked_clicks p
WHERE EXISTS (SELECT FROM legacy_applied_events l WHERE l.event_id = p.event_id);
DELETE FROM legacy_applied_events l USING parked_clicks p WHERE l.event_id = p.event_id;

INSERT INTO applied_events (userid, kind, event_id, event_time_ms)
SELECT k.userid, 'like', k.event_id, k.source_time_ms FROM likes k
WHERE EXISTS (SELECT FROM legacy_applied_events l WHERE l.event_id = 'like:' || k.event_id)
ON CONFLICT DO NOTHING;
DELETE FROM legacy_applied_events l USING likes k WHERE l.event_id = 'like:' || k.event_id;

-- apply_clicks as in 005, its outcomes per (user, event id): a click is a duplicate when its user
-- applied a click with its id before (or earlier in the batch), or when its id is a legacy one.
-- Still one statement for the batch's records, folds and parks; the legacy lookup is one probe of
-- legacy_applied_events' primary key per click. The join on (user, id) makes the planner expect
-- one fresh click where 005's expected ten, so the parked clicks are found by a probe of content's
-- key per click, not by an anti-join with folded, which it then ran as a loop over both (256 x 128
-- rows compared, 3.5 ms a batch). Batches of 256 clicks of 3,000 users with 36-character ids,
-- median of 7 runs of 5,120 clicks, 005 then this: 35.0 and 39.6 us a click; lone clicks about
-- 500 us either way.
CREATE OR REPLACE FUNCTION apply_clicks(p_event_ids text[], p_userids text[], p_urls text[], p_event_times_ms bigint[]) RETURNS text[]
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

  WITH click AS (
    SELECT * FROM unnest(p_event_ids, p_userids, p_urls, p_event_times_ms) WITH ORDINALITY AS c(event_id, userid, url, event_time_ms, n)
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
  SELECT array_agg(CASE WHEN f.n IS NULL THEN 'duplicate' WHEN d.n IS NULL THEN 'parked' ELSE 'applied' END ORDER BY c.n)
  INTO outcomes
  FROM click c LEFT JOIN fresh f ON f.n = c.n LEFT JOIN folded d ON d.n = c.n;
  RETURN outcomes;
END
$$;
