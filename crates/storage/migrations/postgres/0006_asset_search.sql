-- Ledger search without reading every asset (issue 5: list and search at 100,000 assets): a
-- trigram GIN index over `asset.search_text`, which serves `LIKE '%…%'` for terms that hold a
-- trigram (three characters or more within a word, Chinese included); the planner chooses between
-- it and reading the ledger in id order for each search (`assets::list`).
--
-- pg_trgm ships with PostgreSQL (contrib) and is a trusted extension from PostgreSQL 13: the
-- database owner may create it. Where it cannot be created (an older server without superuser
-- rights, contrib not installed) the migration still succeeds, without the index: search then
-- reads the ledger as before, and a warning says so. The index can be added later, by an
-- administrator, with the two statements of this file:
--   CREATE EXTENSION IF NOT EXISTS pg_trgm;
--   CREATE INDEX IF NOT EXISTS asset_search_trgm ON asset USING gin (search_text gin_trgm_ops);
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pg_trgm is not available (%): ledger search reads every asset; see migration 0006_asset_search / 台账搜索将逐条读取资产', SQLERRM;
END
$$;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_opclass WHERE opcname = 'gin_trgm_ops' AND pg_opclass_is_visible(oid)) THEN
        CREATE INDEX IF NOT EXISTS asset_search_trgm ON asset USING gin (search_text gin_trgm_ops);
    END IF;
END
$$;
