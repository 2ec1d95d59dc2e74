-- Substring search over the ledger without reading every row: a trigram GIN index over
-- `asset.search_text` (serves LIKE '%…%' for three characters or more, Chinese included).
-- pg_trgm ships with PostgreSQL and is a trusted extension: the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX asset_search_trgm ON asset USING gin (search_text gin_trgm_ops);
