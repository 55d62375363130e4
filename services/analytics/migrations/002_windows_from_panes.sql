-- Emitted windows are no longer stored row by row (30 rows a click): panes are kept after emission, and a window's rows are
-- the sums of its panes, computed when they are asked for or published. Rows of windows emitted before this migration stay
-- on CLICK_METRICS; the store answers from the windows emitted after it (kept_from_ms).

-- A pane row counts its clicks in the windows starting at or after first_window_ms (and holding the pane): the pane's first
-- window, or, for clicks applied after some of its windows were emitted, the first unemitted window. Every increment of a row
-- happens before the first window it counts in is emitted, so a window summed later gives the rows it was emitted with.
ALTER TABLE panes ADD COLUMN first_window_ms bigint;
UPDATE panes SET first_window_ms = coalesce((SELECT emitted_before_ms FROM progress), (-9223372036854775808)::bigint);
ALTER TABLE panes ALTER COLUMN first_window_ms SET NOT NULL;
ALTER TABLE panes DROP CONSTRAINT panes_pkey;
ALTER TABLE panes ADD PRIMARY KEY (pane_start_ms, userid, event, url, first_window_ms);
CREATE INDEX panes_userid ON panes (userid, pane_start_ms);
CREATE INDEX panes_url ON panes (url, pane_start_ms);
CREATE INDEX panes_event ON panes (event, pane_start_ms);

-- Windows starting before kept_from_ms are not answered: panes they hold may be pruned. emitted_rows now counts the rows
-- published to CLICK_METRICS (the store holds no rows to count).
ALTER TABLE progress ADD COLUMN kept_from_ms bigint;
UPDATE progress SET kept_from_ms = emitted_before_ms;
DROP TABLE click_metrics;

DROP FUNCTION apply_clicks(text[], text[], bigint[], text[], text[], bigint);
DROP FUNCTION emit_windows(bigint, bigint, bigint, bigint, integer);

-- The clicks of one CLICKS batch, in one transaction: each is 'applied' (its pane counts it), 'duplicate' (its (userid,
-- event_id) was applied before, or earlier in the batch) or 'late' (every window holding it is emitted). One outcome per
-- click, in order, and the watermark after.
CREATE FUNCTION apply_clicks(p_userids text[], p_event_ids text[], p_times_ms bigint[], p_events text[], p_urls text[], p_size_ms bigint, p_slide_ms bigint,
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

-- Emits the windows the watermark closed (those ending at or before it minus the lateness), or, when no click was applied
-- for p_idle_ms (null: the consumer has clicks waiting, so it is not idle), every window holding a click: moves
-- emitted_before, after which a click in those windows no longer counts in them. Returns the window starts emitted,
-- [emitted_from, emitted_before); nothing when none was due.
CREATE FUNCTION emit_windows(p_size_ms bigint, p_slide_ms bigint, p_lateness_ms bigint, p_idle_ms bigint,
  OUT emitted_from bigint, OUT emitted_before bigint)
LANGUAGE plpgsql AS $$
DECLARE
  st progress%ROWTYPE;
  target bigint;
  x bigint;
BEGIN
  SELECT * INTO st FROM progress FOR UPDATE;
  IF st.watermark_ms IS NULL THEN RETURN; END IF;
  x := st.watermark_ms - p_lateness_ms - p_size_ms;
  target := x - mod(mod(x, p_slide_ms) + p_slide_ms, p_slide_ms) + p_slide_ms;
  IF p_idle_ms IS NOT NULL AND st.last_applied_at <= now() - p_idle_ms * interval '1 millisecond' THEN
    x := st.watermark_ms;
    target := greatest(target, x - mod(mod(x, p_slide_ms) + p_slide_ms, p_slide_ms) + p_slide_ms);
  END IF;
  IF target <= coalesce(st.emitted_before_ms, target - 1) THEN RETURN; END IF;
  -- No window before the first open pane's first window holds data.
  emitted_from := coalesce(st.emitted_before_ms,
    (SELECT min(pane_start_ms) FROM panes) - p_size_ms + p_slide_ms, target);
  emitted_before := target;
  UPDATE progress SET emitted_before_ms = target, kept_from_ms = coalesce(kept_from_ms, emitted_from);
END $$;
