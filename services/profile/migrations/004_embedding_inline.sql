-- Keep each page's embedding inside its row. A page row (url, id, title, text, embedding, search)
-- is larger than PostgreSQL's ~2 KB TOAST threshold, and pgvector's type defaults to EXTERNAL
-- storage, so the toaster moved the largest value out first: the embedding. SimilarContent's and
-- RecommendedEvents' exact scans read every embedding, which then cost a TOAST index lookup and
-- heap fetch per page: 8,224 buffers for the 2,596 reference pages, 652 with the vectors inline.
-- PLAIN keeps the vector inline and uncompressed, so the toaster moves the text and the search
-- vector out instead: a scan reads 4 rows per 8 KB block and no TOAST at all. (MAIN would keep it
-- inline too, but may first try to compress float vectors, which do not compress; a row with a PLAIN
-- vector fits a block up to about 2,000 dimensions, the most the HNSW index takes anyway.)
--
-- SET STORAGE applies to values stored from now on, and an UPDATE that writes back the same
-- TOAST pointer keeps it out of line. The USING clause makes ALTER TYPE rewrite the table with a
-- new datum for every embedding (the same values: vector -> real[] -> vector is exact), so existing
-- rows take the new storage too; the rewrite leaves no dead row versions behind and rebuilds the
-- indexes (the table is locked meanwhile: 0.7-1.6 s for the reference pages, most of it the HNSW
-- index). Both subcommands are one statement: the rewrite runs after the storage is set.
-- The text stays EXTENDED: the scans do not read it, EXTERNAL made no difference to them, and a
-- long text takes less room compressed.
ALTER TABLE content
  ALTER COLUMN embedding TYPE vector({{EMBEDDING_DIMENSION}}) USING embedding::real[]::vector({{EMBEDDING_DIMENSION}}),
  ALTER COLUMN embedding SET STORAGE PLAIN;
