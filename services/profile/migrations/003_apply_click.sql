-- One click folded in by one statement: the steps applyClick took in six round trips (BEGIN, the
-- url lock, the event id, the interest, the terms, COMMIT) run inside PostgreSQL in one.
-- Returns 'applied', 'parked' (the page has no embedding yet) or 'duplicate' (event id seen before).
CREATE FUNCTION apply_click(p_event_id text, p_userid text, p_url text, p_event_time_ms bigint) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  -- Clicks and embeddings of one url take turns: a click is never parked after its page's parked
  -- clicks were folded in.
  PERFORM pg_advisory_xact_lock(hashtextextended(p_url, 0));
  INSERT INTO applied_events (event_id) VALUES (p_event_id) ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN
    RETURN 'duplicate';
  END IF;
  INSERT INTO interests (userid, sum, terms) SELECT p_userid, embedding, 1 FROM content WHERE url = p_url
    ON CONFLICT (userid) DO UPDATE SET sum = interests.sum + excluded.sum, terms = interests.terms + excluded.terms;
  IF NOT FOUND THEN
    INSERT INTO parked_clicks (event_id, userid, url, event_time_ms) VALUES (p_event_id, p_userid, p_url, p_event_time_ms);
    RETURN 'parked';
  END IF;
  INSERT INTO user_page_terms (userid, url, clicks) VALUES (p_userid, p_url, 1)
    ON CONFLICT (userid, url) DO UPDATE SET clicks = user_page_terms.clicks + 1;
  RETURN 'applied';
END
$$;
