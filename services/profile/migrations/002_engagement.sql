-- Likes and stated interests add terms to a user's interest, next to clicks.

-- Terms per (user, page): clicks, and likes whose page embedding is in the user's sum. A new
-- embedding of a page corrects each sum by (clicks + likes) × (new − old).
ALTER TABLE user_page_clicks RENAME TO user_page_terms;
ALTER TABLE user_page_terms ADD COLUMN likes bigint NOT NULL DEFAULT 0;

-- The latest like state of each (user, page id): the greatest (source_time_ms, event_id) wins.
CREATE TABLE likes (
  userid text NOT NULL,
  page_id text NOT NULL,
  liked boolean NOT NULL,
  source_time_ms bigint NOT NULL,
  event_id text NOT NULL,
  -- The page whose embedding this like put into the user's interest; NULL while it put none
  -- (an unlike, or a like of a page not embedded yet, folded in when the page arrives).
  applied_url text,
  PRIMARY KEY (userid, page_id)
);
CREATE INDEX likes_liked_page ON likes (page_id) WHERE liked;

-- Likes name pages by their source id; Events lists pages in id order (numbers as numbers,
-- pages without an id last).
CREATE INDEX content_id ON content (id);
CREATE INDEX content_id_order ON content ((id = ''), length(id), (id COLLATE "C"), url);

-- Full-text search over title (weight A) and text (weight B).
ALTER TABLE content ADD COLUMN search tsvector
  GENERATED ALWAYS AS (setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', text), 'B')) STORED;
CREATE INDEX content_search ON content USING gin (search);
