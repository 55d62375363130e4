-- EventMix summed every pane row of its period: about a row per click, and a period may span every pane kept (7 days). At 40
-- million clicks a week that reaches the statement timeout, and any caller may ask it. Each pane's clicks by event are now kept
-- beside the panes, written by the same statement, so EventMix reads a few rows per pane whatever the traffic. An erasure moves
-- pane rows to the erased users' ('') without changing any event's sum, so it leaves these alone; pruning drops them with the
-- panes.
CREATE TABLE pane_events (
  pane_start_ms bigint NOT NULL,
  event text NOT NULL,
  clicks bigint NOT NULL,
  PRIMARY KEY (pane_start_ms, event)
);
INSERT INTO pane_events (pane_start_ms, event, clicks)
SELECT pane_start_ms, event, sum(clicks) FROM panes GROUP BY pane_start_ms, event;

-- apply_clicks of 002, counting the fresh clicks into pane_events too (same arguments: a replica of the previous build keeps
-- calling it during a rollout).
CREATE OR REPLACE FUNCTION apply_clicks(p_userids text[], p_event_ids text[], p_times_ms bigint[], p_events text[], p_urls text[], p_size_ms bigint, p_slide_ms bigint,
  OUT outcomes text[], OUT watermark bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  emitted_before bigint;
BEGIN
  IF cardinality(p_event_ids) <> cardinality(p_userids) OR cardinality(p_times_ms) <> cardinality(p_userids)
     OR cardinality(p_events) <> cardinality(p_userids) OR cardinality(p_urls) <> cardinality(p_userids) THEN
    RAISE EXCEPTION 'apply_clicks: arrays of different lengths';
  END IF;
  SELECT emitted_before_ms INTO emitted_before FROM progress FOR UPDATE;
  WITH click AS (
    SELECT c.*, c.t - mod(mod(c.t, p_slide_ms) + p_slide_ms, p_slide_ms) AS pane
    FROM unnest(p_userids, p_event_ids, p_times_ms, p_events, p_urls) WITH ORDINALITY AS c(userid, event_id, t, event, url, n)
  ),
  timely AS (
    SELECT * FROM click WHERE emitted_before IS NULL OR pane >= emitted_before
  ),
  recorded AS (
    INSERT INTO applied_clicks (userid, event_id, event_time_ms)
    SELECT DISTINCT ON (userid, event_id) userid, event_id, t FROM timely ORDER BY userid, event_id, n
    ON CONFLICT DO NOTHING
    RETURNING userid, event_id
  ),
  fresh AS (
    SELECT DISTINCT ON (c.userid, c.event_id) c.* FROM timely c JOIN recorded r USING (userid, event_id) ORDER BY c.userid, c.event_id, c.n
  ),
  counted AS (
    INSERT INTO panes (pane_start_ms, userid, event, url, first_window_ms, clicks)
    SELECT pane, userid, event, url, greatest(pane - p_size_ms + p_slide_ms, emitted_before), count(*)
    FROM fresh GROUP BY pane, userid, event, url ORDER BY pane, userid, event, url
    ON CONFLICT (pane_start_ms, userid, event, url, first_window_ms) DO UPDATE SET clicks = panes.clicks + excluded.clicks
  ),
  totals AS (
    INSERT INTO pane_events (pane_start_ms, event, clicks)
    SELECT pane, event, count(*) FROM fresh GROUP BY pane, event ORDER BY pane, event
    ON CONFLICT (pane_start_ms, event) DO UPDATE SET clicks = pane_events.clicks + excluded.clicks
  ),
  outcome AS (
    SELECT c.n,
      CASE WHEN f.n IS NOT NULL THEN 'applied'
           WHEN emitted_before IS NOT NULL AND c.pane < emitted_before
                AND NOT EXISTS (SELECT FROM applied_clicks a WHERE a.userid = c.userid AND a.event_id = c.event_id) THEN 'late'
           ELSE 'duplicate' END AS status
    FROM click c LEFT JOIN fresh f ON f.n = c.n
  ),
  moved AS (
    UPDATE progress SET
      watermark_ms = CASE WHEN (SELECT max(t) FROM fresh) IS NULL THEN watermark_ms ELSE greatest(watermark_ms, (SELECT max(t) FROM fresh)) END,
      last_applied_at = CASE WHEN EXISTS (SELECT FROM fresh) THEN now() ELSE last_applied_at END,
      applied_clicks = applied_clicks + (SELECT count(*) FROM outcome WHERE status = 'applied'),
      duplicate_clicks = duplicate_clicks + (SELECT count(*) FROM outcome WHERE status = 'duplicate'),
      late_clicks = late_clicks + (SELECT count(*) FROM outcome WHERE status = 'late')
  )
  SELECT array_agg(status ORDER BY n) INTO outcomes FROM outcome;
  SELECT watermark_ms INTO watermark FROM progress;
END $$;
