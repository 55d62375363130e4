-- A user who stops sending events of a kind is forgotten for that kind once silent for the
-- retention, as covisit's keys of a user expire 7 days after their last click. Until now a user's
-- ids were pruned only by that user's own watermark, which moves only with the user's own events:
-- the ids and the watermark of a user who never came back stayed for good, one row per event of
-- their last 7 days and one per kind, for every user ever seen.
--
-- applied_at is when an event of the user and kind last went through the watermark (the wall clock
-- of that transaction). A user silent for DEDUP_RETENTION_MS since then loses the watermark and
-- the ids of that kind: an event of theirs sent again after that is applied again. No redelivery is
-- that old: CLICKS keeps a click CLICKS_MAX_AGE_MS (7 days), and a message is redelivered only
-- while unacked. A user with a click still parked (its page not yet embedded) is kept until the
-- click is applied or expires (PARKED_CLICK_MAX_AGE_MS): its id guards the parked row.
ALTER TABLE event_watermarks ADD COLUMN applied_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX event_watermarks_applied_at ON event_watermarks (applied_at);

-- Every application upserts its users' watermark rows (apply_clicks, record_applied), setting
-- watermark_ms whether or not it moves: each one marks the user as heard from.
CREATE FUNCTION touch_event_watermark() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.applied_at := now();
  RETURN NEW;
END
$$;
CREATE TRIGGER event_watermarks_touch BEFORE UPDATE OF watermark_ms ON event_watermarks FOR EACH ROW EXECUTE FUNCTION touch_event_watermark();

-- Forgets at most p_limit (user, kind) pairs silent for the retention, the longest silent first:
-- their watermarks and applied ids. A pair being applied meanwhile holds its watermark row's lock
-- and is skipped (left for the next pass). Returns the pairs and ids deleted.
CREATE FUNCTION forget_silent_users(p_retention_ms bigint, p_limit integer, OUT users bigint, OUT ids bigint)
LANGUAGE plpgsql AS $$
BEGIN
  WITH silent AS (
    SELECT w.userid, w.kind FROM event_watermarks w
    WHERE w.applied_at < now() - make_interval(secs => p_retention_ms / 1000.0)
      AND NOT (w.kind = 'click' AND EXISTS (SELECT FROM parked_clicks p WHERE p.userid = w.userid))
    ORDER BY w.applied_at
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED
  ),
  gone AS (
    DELETE FROM event_watermarks w USING silent s WHERE w.userid = s.userid AND w.kind = s.kind
    RETURNING w.userid, w.kind
  ),
  gone_ids AS (
    DELETE FROM applied_events a USING gone g WHERE a.userid = g.userid AND a.kind = g.kind
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM gone_ids) INTO users, ids;
END
$$;
