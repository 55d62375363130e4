-- EventMix summed every pane row of its period: about a row per click, and a period may span every pane kept (7 days). At 40
-- million clicks a week that reaches the statement timeout, and any caller may ask it. Each closed pane's clicks by event are
-- now kept beside the panes, so EventMix reads a few rows per closed pane whatever the traffic, and the open panes' rows (those a
-- click may still come into: the lateness and a window behind the watermark) as before.
--
-- A pane is closed once its windows are emitted (before emitted_before_ms): a click into it is late, an erasure moves its rows to
-- the erased users' '' rows without changing any event's sum, and pruning deletes it. So its totals, taken once, stay true;
-- totals_before_ms says how far they are taken. They are taken after each emission (close_pane_totals), by whichever replica
-- emits next: a replica of the previous build emitting during a rollout leaves them behind, and EventMix reads those panes' rows
-- until they are taken.
CREATE TABLE pane_events (
  pane_start_ms bigint NOT NULL,
  event text NOT NULL,
  clicks bigint NOT NULL,
  PRIMARY KEY (pane_start_ms, event)
);

-- Every pane before it has its totals in pane_events (those pruned since excepted); null: none yet.
ALTER TABLE progress ADD COLUMN totals_before_ms bigint;

-- Takes the totals of the panes closed since totals_before_ms. Locks progress as click batches and emission do. Returns the rows.
CREATE FUNCTION close_pane_totals() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  st progress%ROWTYPE;
  taken bigint;
BEGIN
  SELECT * INTO st FROM progress FOR UPDATE;
  IF st.emitted_before_ms IS NULL OR st.emitted_before_ms <= coalesce(st.totals_before_ms, st.emitted_before_ms - 1) THEN
    RETURN 0;
  END IF;
  INSERT INTO pane_events (pane_start_ms, event, clicks)
  SELECT pane_start_ms, event, sum(clicks) FROM panes
  WHERE pane_start_ms < st.emitted_before_ms AND (st.totals_before_ms IS NULL OR pane_start_ms >= st.totals_before_ms)
  GROUP BY pane_start_ms, event ORDER BY pane_start_ms, event;
  GET DIAGNOSTICS taken = ROW_COUNT;
  UPDATE progress SET totals_before_ms = st.emitted_before_ms;
  RETURN taken;
END $$;

SELECT close_pane_totals();
