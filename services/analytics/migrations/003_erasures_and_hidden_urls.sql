-- A user's erasure (UserDeleted on CLICKS) and pages hidden from Trending (PageVisibility on VISIBILITY).

-- The clicks of erased users, per pane: userid '' (no click has it: one without a userid is never applied). Such rows count in
-- EventMix and Trending, which carry no userid, and are never answered by ClickMetrics nor published.
COMMENT ON COLUMN panes.userid IS 'the user; '''' for the clicks of users erased since (they stay in the aggregates only)';

-- Users erased so far.
ALTER TABLE progress ADD COLUMN erased_users bigint NOT NULL DEFAULT 0;

-- Forgets a user: their pane rows become rows of the erased ('') and their applied ids go, so what they did before is answered
-- nowhere and their next clicks are a new user's. Refused (erased = false, nothing changed) while p_when_published and an emitted
-- window is not yet published: an emitted window's rows must not change until they are on CLICK_METRICS, or a publication
-- resumed after a crash would cut them differently. Locks progress as click batches and emission do.
CREATE FUNCTION erase_user(p_userid text, p_when_published boolean, OUT erased boolean, OUT pane_rows bigint, OUT applied_ids bigint)
LANGUAGE plpgsql AS $$
DECLARE
  st progress%ROWTYPE;
BEGIN
  SELECT * INTO st FROM progress FOR UPDATE;
  IF p_when_published AND st.emitted_before_ms IS NOT NULL
     AND coalesce(st.published_before_ms, st.kept_from_ms, st.emitted_before_ms) < st.emitted_before_ms THEN
    erased := false;
    RETURN;
  END IF;
  INSERT INTO panes (pane_start_ms, userid, event, url, first_window_ms, clicks)
  SELECT pane_start_ms, '', event, url, first_window_ms, clicks FROM panes WHERE userid = p_userid
  ORDER BY pane_start_ms, event, url, first_window_ms
  ON CONFLICT (pane_start_ms, userid, event, url, first_window_ms) DO UPDATE SET clicks = panes.clicks + excluded.clicks;
  DELETE FROM panes WHERE userid = p_userid;
  GET DIAGNOSTICS pane_rows = ROW_COUNT;
  DELETE FROM applied_clicks WHERE userid = p_userid;
  GET DIAGNOSTICS applied_ids = ROW_COUNT;
  UPDATE progress SET erased_users = erased_users + 1;
  erased := true;
END $$;

-- Each url's latest visibility, versioned by its VISIBILITY stream sequence: a state older than the one kept never replaces it.
CREATE TABLE url_visibility (
  url text PRIMARY KEY,
  hidden boolean NOT NULL,
  seq bigint NOT NULL
);
CREATE INDEX url_visibility_hidden ON url_visibility (url) WHERE hidden;
