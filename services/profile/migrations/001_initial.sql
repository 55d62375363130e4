-- Pages with their newest embedding. {{EMBEDDING_DIMENSION}} is filled in from EMBEDDING_DIMENSION.
CREATE TABLE content (
  url text COLLATE "C" PRIMARY KEY,  -- url order is byte order, whatever the database locale
  id text NOT NULL DEFAULT '',
  title text NOT NULL DEFAULT '',
  text text NOT NULL DEFAULT '',
  embedding vector({{EMBEDDING_DIMENSION}}) NOT NULL,
  version bigint NOT NULL,
  model text NOT NULL DEFAULT ''
);
CREATE INDEX content_embedding_hnsw ON content USING hnsw (embedding vector_cosine_ops);

-- A user's interest is the mean sum/terms of the embeddings behind its terms (clicks now; likes and
-- stated interests later add terms of their own). Cosine similarity only needs the sum.
CREATE TABLE interests (
  userid text PRIMARY KEY,
  sum vector({{EMBEDDING_DIMENSION}}) NOT NULL,
  terms bigint NOT NULL
);

-- Which pages each click term came from, so a new embedding of a page can correct the sums.
CREATE TABLE user_page_clicks (
  userid text NOT NULL,
  url text NOT NULL,
  clicks bigint NOT NULL,
  PRIMARY KEY (userid, url)
);
CREATE INDEX user_page_clicks_url ON user_page_clicks (url);

-- Click event ids already applied (folded in or parked): redelivery changes nothing.
CREATE TABLE applied_events (
  event_id text PRIMARY KEY
);

-- Clicks whose page has no embedding yet; folded in when it arrives.
CREATE TABLE parked_clicks (
  event_id text PRIMARY KEY,
  userid text NOT NULL,
  url text NOT NULL,
  event_time_ms bigint NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_clicks_url ON parked_clicks (url);
