-- Clicks per (userid, event, url) in hopping windows of event time, counted per pane (one slide):
-- a click is one increment of one pane row; a window is the sum of its panes when it is emitted.

-- Where the stream stands, in one row that every batch and every emission locks: a click is
-- counted only while a window holding it is unemitted, and a window is emitted only after every
-- batch before it committed.
CREATE TABLE progress (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  -- The newest event time applied (ms since the epoch); null before the first click.
  watermark_ms bigint,
  -- Every window starting before it is in click_metrics; a click before it is late. Null: none emitted.
  emitted_before_ms bigint,
  -- Every window starting before it is on the CLICK_METRICS stream.
  published_before_ms bigint,
  -- When a click was last applied: emission waits for an idle stream from here.
  last_applied_at timestamptz NOT NULL DEFAULT now(),
  applied_clicks bigint NOT NULL DEFAULT 0,
  duplicate_clicks bigint NOT NULL DEFAULT 0,
  late_clicks bigint NOT NULL DEFAULT 0,
  emitted_rows bigint NOT NULL DEFAULT 0
);
INSERT INTO progress DEFAULT VALUES;

-- Clicks per key in the pane [pane_start_ms, pane_start_ms + slide); deleted once every window holding the pane is emitted.
CREATE TABLE panes (
  pane_start_ms bigint NOT NULL,
  userid text NOT NULL,
  event text NOT NULL,
  url text NOT NULL,
  clicks integer NOT NULL,
  PRIMARY KEY (pane_start_ms, userid, event, url)
);

-- The ids applied, per user; kept back to DEDUP_RETENTION_MS of event time behind the watermark.
CREATE TABLE applied_clicks (
  userid text NOT NULL,
  event_id text NOT NULL,
  event_time_ms bigint NOT NULL,
  PRIMARY KEY (userid, event_id)
);
CREATE INDEX applied_clicks_event_time ON applied_clicks (event_time_ms);

-- The emitted rows: the reference's clickstream_aggregated, queryable. Kept back to CLICK_METRICS_RETENTION_MS behind the watermark.
CREATE TABLE click_metrics (
  window_start timestamptz NOT NULL,
  window_end timestamptz NOT NULL,
  userid text NOT NULL,
  event text NOT NULL,
  url text NOT NULL,
  event_count bigint NOT NULL,
  PRIMARY KEY (window_start, userid, event, url)
);
CREATE INDEX click_metrics_userid ON click_metrics (userid, window_start);
CREATE INDEX click_metrics_url ON click_metrics (url, window_start);
CREATE INDEX click_metrics_event ON click_metrics (event, window_start);

-- The clicks of one CLICKS batch, in one transaction: each is 'applied' (its pane counts it),
-- 'duplicate' (its (userid, event_id) was applied before, or earlier in the batch) or 'late'
-- (every window holding it is emitted). One outcome per click, in order, and the watermark after.
CREATE FUNCTION apply_clicks(p_userids text[], p_event_ids text[], p_times_ms bigint[], p_events text[], p_urls text[], p_slide_ms bigint,
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
    INSERT INTO panes (pane_start_ms, userid, event, url, clicks)
    SELECT pane, userid, event, url, count(*) FROM fresh GROUP BY pane, userid, event, url ORDER BY pane, userid, event, url
    ON CONFLICT (pane_start_ms, userid, event, url) DO UPDATE SET clicks = panes.clicks + excluded.clicks
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

-- Emits the windows the watermark closed (those ending at or before it minus the lateness), or,
-- when no click was applied for p_idle_ms (null: the consumer has clicks waiting, so it is not
-- idle), every window holding data; at most p_max_windows of them, in window order, each
-- as the sum of its panes. Drops the panes no unemitted window holds. Returns the window starts
-- emitted, [emitted_from, emitted_before), and the rows inserted.
CREATE FUNCTION emit_windows(p_size_ms bigint, p_slide_ms bigint, p_lateness_ms bigint, p_idle_ms bigint, p_max_windows integer,
  OUT emitted_from bigint, OUT emitted_before bigint, OUT emitted_rows bigint)
LANGUAGE plpgsql AS $$
DECLARE
  st progress%ROWTYPE;
  target bigint;
  first_pane bigint;
  x bigint;
BEGIN
  emitted_rows := 0;
  SELECT * INTO st FROM progress FOR UPDATE;
  IF st.watermark_ms IS NULL THEN RETURN; END IF;
  x := st.watermark_ms - p_lateness_ms - p_size_ms;
  target := x - mod(mod(x, p_slide_ms) + p_slide_ms, p_slide_ms) + p_slide_ms;
  IF p_idle_ms IS NOT NULL AND st.last_applied_at <= now() - p_idle_ms * interval '1 millisecond' THEN
    x := st.watermark_ms;
    target := greatest(target, x - mod(mod(x, p_slide_ms) + p_slide_ms, p_slide_ms) + p_slide_ms);
  END IF;
  SELECT min(pane_start_ms) INTO first_pane FROM panes;
  -- No window before the first pane's first window holds data.
  emitted_from := coalesce(greatest(st.emitted_before_ms, first_pane - p_size_ms + p_slide_ms), st.emitted_before_ms, target);
  emitted_before := least(target, emitted_from + p_max_windows * p_slide_ms);
  IF emitted_before <= coalesce(st.emitted_before_ms, emitted_before - 1) THEN
    emitted_before := st.emitted_before_ms;
    RETURN;
  END IF;
  IF emitted_before > emitted_from THEN
    INSERT INTO click_metrics (window_start, window_end, userid, event, url, event_count)
    SELECT timestamptz 'epoch' + w * interval '1 millisecond', timestamptz 'epoch' + (w + p_size_ms) * interval '1 millisecond',
      p.userid, p.event, p.url, sum(p.clicks)
    FROM panes p
    CROSS JOIN LATERAL generate_series(greatest(emitted_from, p.pane_start_ms - p_size_ms + p_slide_ms), least(emitted_before - p_slide_ms, p.pane_start_ms), p_slide_ms) AS w
    -- The panes of the windows emitted: from the first one's start to the last one's end.
    WHERE p.pane_start_ms >= emitted_from AND p.pane_start_ms < emitted_before - p_slide_ms + p_size_ms
    GROUP BY w, p.userid, p.event, p.url
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS emitted_rows = ROW_COUNT;
  END IF;
  DELETE FROM panes WHERE pane_start_ms < emitted_before;
  UPDATE progress SET emitted_before_ms = emitted_before, emitted_rows = progress.emitted_rows + emit_windows.emitted_rows;
END $$;
