-- Trending summed every pane row of its period: about a row per click. At 40 million clicks a week a day holds 5.9 million
-- rows and Trending("24h") took about a second, and any user may ask it. Each period now keeps its closed panes' clicks by
-- event and url, moved along as panes close: a pane closing adds its rows, the pane leaving the period subtracts them. Trending
-- reads those totals, subtracts the closed panes before its period (at most the lateness and a window of them), and adds the
-- panes after the totals (the open ones), whatever the traffic. A closed pane's sum by (event, url) never changes again (a click
-- into it is late, an erasure moves rows within it), so totals moved along stay the panes' sums.

-- The periods whose totals are kept, and how far: the totals of period_ms are the clicks of the panes starting in
-- [greatest(before_ms - period_ms, kept_from_ms), before_ms), the panes kept. Null: none taken yet.
CREATE TABLE trending_periods (
  period_ms bigint PRIMARY KEY,
  before_ms bigint
);
INSERT INTO trending_periods (period_ms) VALUES (300000), (3600000), (86400000);

CREATE TABLE trending_totals (
  period_ms bigint NOT NULL,
  event text NOT NULL,
  url text NOT NULL,
  clicks bigint NOT NULL,
  PRIMARY KEY (period_ms, event, url)
) WITH (fillfactor = 70);
-- Adds, for period p_period, the clicks of the panes starting in [p_in_from, p_in_to) and subtracts those of the panes starting
-- in [p_out_from, p_out_to); a pane in both nets nothing. Keys left with no clicks go. Callers hold the period's row locked.
-- Room is left in each page for the updates (fillfactor): a key's clicks change at every move.
CREATE FUNCTION shift_trending_totals(p_period bigint, p_in_from bigint, p_in_to bigint, p_out_from bigint, p_out_to bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  gone_events text[];
  gone_urls text[];
  below_zero boolean;
BEGIN
  -- An upsert probes the key's index whatever the size of the totals; the keys it leaves at 0 are deleted after.
  WITH shifted AS (
    INSERT INTO trending_totals AS t (period_ms, event, url, clicks)
    SELECT p_period, event, url, d FROM (
      SELECT event, url,
             sum(CASE WHEN pane_start_ms >= p_in_from AND pane_start_ms < p_in_to THEN clicks ELSE 0 END)
             - sum(CASE WHEN pane_start_ms >= p_out_from AND pane_start_ms < p_out_to THEN clicks ELSE 0 END) AS d
      FROM panes
      WHERE (pane_start_ms >= p_in_from AND pane_start_ms < p_in_to) OR (pane_start_ms >= p_out_from AND pane_start_ms < p_out_to)
      GROUP BY event, url
    ) c WHERE d <> 0
    ON CONFLICT (period_ms, event, url) DO UPDATE SET clicks = t.clicks + excluded.clicks
    RETURNING t.event, t.url, t.clicks
  )
  SELECT array_agg(event) FILTER (WHERE clicks = 0), array_agg(url) FILTER (WHERE clicks = 0), coalesce(bool_or(clicks < 0), false)
  INTO gone_events, gone_urls, below_zero FROM shifted;
  -- A move taking more than the totals hold fails (and is undone) instead of drifting; the period's totals are taken again from
  -- its panes once they lag by the period.
  IF below_zero THEN
    RAISE EXCEPTION 'trending totals of period % would go below 0', p_period;
  END IF;
  IF gone_events IS NOT NULL THEN
    DELETE FROM trending_totals WHERE period_ms = p_period AND (event, url) IN (SELECT * FROM unnest(gone_events, gone_urls));
  END IF;
END $$;

-- Moves every period's totals to emitted_before_ms (the panes before it are closed). Called after each emission and pruning, on
-- its own: it holds the periods, not progress, so clicks are applied meanwhile. kept_from_ms is read once the periods are held,
-- as pruning moves it holding them too (below).
CREATE FUNCTION move_trending_totals() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  p trending_periods%ROWTYPE;
  e bigint;
  k bigint;
BEGIN
  PERFORM FROM trending_periods ORDER BY period_ms FOR UPDATE;
  SELECT emitted_before_ms, kept_from_ms INTO e, k FROM progress;
  IF e IS NULL THEN
    RETURN;
  END IF;
  FOR p IN SELECT * FROM trending_periods ORDER BY period_ms LOOP
    CONTINUE WHEN p.before_ms IS NOT NULL AND p.before_ms >= e;
    IF p.before_ms IS NULL OR e - p.period_ms >= p.before_ms THEN
      -- None yet, or every pane they hold has left the period: taken from the period's panes, never more than a period of them.
      DELETE FROM trending_totals WHERE period_ms = p.period_ms;
      PERFORM shift_trending_totals(p.period_ms, greatest(e - p.period_ms, k), e, 0, 0);
    ELSE
      -- In: the panes closed since. Out: those now before the period.
      PERFORM shift_trending_totals(p.period_ms, p.before_ms, e, greatest(p.before_ms - p.period_ms, k), greatest(e - p.period_ms, k));
    END IF;
    UPDATE trending_periods SET before_ms = e WHERE period_ms = p.period_ms;
  END LOOP;
END $$;

-- kept_from_ms moving (pruning, of this build or the previous one) takes the panes it leaves behind out of the totals, before
-- they are deleted: the UPDATE of progress comes first in the statement that prunes. A period whose totals end before it holds
-- none, from there.
CREATE FUNCTION trending_totals_kept_from() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  p trending_periods%ROWTYPE;
BEGIN
  IF OLD.kept_from_ms IS NULL OR NEW.kept_from_ms IS NULL OR NEW.kept_from_ms <= OLD.kept_from_ms THEN
    RETURN NEW;
  END IF;
  -- Every period held, those with no totals too: a first move taking them waits here, or this waits for it and sees them.
  FOR p IN SELECT * FROM trending_periods ORDER BY period_ms FOR UPDATE LOOP
    CONTINUE WHEN p.before_ms IS NULL;
    IF NEW.kept_from_ms >= p.before_ms THEN
      DELETE FROM trending_totals WHERE period_ms = p.period_ms;
      UPDATE trending_periods SET before_ms = NEW.kept_from_ms WHERE period_ms = p.period_ms;
    ELSE
      PERFORM shift_trending_totals(p.period_ms, 0, 0,
        greatest(p.before_ms - p.period_ms, OLD.kept_from_ms), greatest(p.before_ms - p.period_ms, NEW.kept_from_ms));
    END IF;
  END LOOP;
  RETURN NEW;
END $$;
CREATE TRIGGER trending_totals_kept_from BEFORE UPDATE OF kept_from_ms ON progress
FOR EACH ROW EXECUTE FUNCTION trending_totals_kept_from();

-- The totals are taken by the first move after an emission or pruning, not here: this transaction holds progress, and
-- every click batch would wait for it.
