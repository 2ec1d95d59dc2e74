-- Ledger search under filters, and imports that index their rows in one statement (issue 5:
-- filtered list and search over 100,000 assets p99 < 30 ms; a 10,000-row sheet in under 3 s).
--
-- The search index of migration 0006 marked each asset with its contract only, so a search under
-- a filter that excludes the term's common matches (`kind=host&q=交换机`) found its first 1,000
-- matches, none of them a host, and then read the contract's hosts one by one with LIKE. Here
-- every value the list filters on by equality is a mark in the `scope` column as well, so that
-- the phrase query ANDs them with the term and the index answers exactly (`assets::list`):
--
--   contract  U+001E, C, U+001E            C = U+F0000 + contract id (as in 0006)
--   kind      U+001D, C, U+E000 + n        n = 1… in the order of the CHECK list of `asset.kind`
--   status    U+001C, C, U+E000 + n        n = 1… in the order of the CHECK list of `asset.status`
--   site      U+001B, C, U+F0000 + (site id mod 131072)       (none when the asset has no site)
--   supplier  U+001A, C, U+F0000 + (supplier id mod 131072)   (none when it has no supplier)
--
-- Each mark is one trigram, and its first character appears nowhere else in the column, so the
-- phrase "U+001D C K" is found in exactly the rows of that contract and kind. The filter marks hold
-- the contract, so a query with a filter needs no contract mark and reads shorter lists. Ids of
-- 131,072 and beyond share marks (U+F0000 + id would leave Unicode): the index then finds more
-- rows than match, never fewer, and the list checks every row it reads against every condition.
--
-- A contentless index forgets a row only when given the values it indexed, so the whole index is
-- built again (all rows, in one statement) and the triggers compute the marks of the old row too.
-- The kind and status numbers are checked against `yunwei_core::ledger` by a unit test of
-- `assets.rs`, which counts each `WHEN '…' THEN 0x…` three times below: keep the three copies of
-- the scope expression (the view and the two triggers that forget a row) equal.
--
-- Imports: FTS5 writes its pending entries to disk at the end of every statement that changes it
-- inside a transaction, which made a 100,000-row import 70 % slower one row at a time through the
-- insert trigger. `assets::import` puts a row in `asset_search_pause`, inserts the assets, indexes
-- them in one statement from `asset_search_row` and removes the row, all in its transaction, so no
-- other connection ever sees the pause.
DROP TRIGGER asset_search_insert;
DROP TRIGGER asset_search_delete;
DROP TRIGGER asset_search_update;
DROP TABLE asset_search_terms;
DROP TABLE asset_search;

CREATE VIRTUAL TABLE asset_search USING fts5(
    scope, body, content = '', columnsize = 0, tokenize = 'trigram case_sensitive 1'
);
CREATE VIRTUAL TABLE asset_search_terms USING fts5vocab(asset_search, instance);
CREATE TABLE asset_search_pause (paused INTEGER NOT NULL);

-- What the index holds for each asset.
CREATE VIEW asset_search_row (id, contract_id, scope, body) AS
SELECT id, contract_id,
    char(30, 983040 + contract_id, 30)
    || char(29, 983040 + contract_id, CASE kind
        WHEN 'network' THEN 0xE001 WHEN 'security' THEN 0xE002 WHEN 'host' THEN 0xE003
        WHEN 'storage' THEN 0xE004 WHEN 'terminal' THEN 0xE005 WHEN 'environment' THEN 0xE006
        WHEN 'software' THEN 0xE007 WHEN 'cloud' THEN 0xE008 WHEN 'other' THEN 0xE009 ELSE 0xE000 END)
    || char(28, 983040 + contract_id, CASE status
        WHEN 'in_stock' THEN 0xE001 WHEN 'in_service' THEN 0xE002 WHEN 'under_repair' THEN 0xE003
        WHEN 'retired' THEN 0xE004 ELSE 0xE000 END)
    || CASE WHEN site_id IS NULL THEN '' ELSE char(27, 983040 + contract_id, 983040 + site_id % 131072) END
    || CASE WHEN supplier_id IS NULL THEN '' ELSE char(26, 983040 + contract_id, 983040 + supplier_id % 131072) END,
    lower(search_text) || '  '
FROM asset;

CREATE TRIGGER asset_search_insert AFTER INSERT ON asset
WHEN NOT EXISTS (SELECT 1 FROM asset_search_pause) BEGIN
    INSERT INTO asset_search (rowid, scope, body) SELECT id, scope, body FROM asset_search_row WHERE id = new.id;
END;
CREATE TRIGGER asset_search_delete AFTER DELETE ON asset BEGIN
    INSERT INTO asset_search (asset_search, rowid, scope, body)
    VALUES ('delete', old.id,
        char(30, 983040 + old.contract_id, 30)
        || char(29, 983040 + old.contract_id, CASE old.kind
            WHEN 'network' THEN 0xE001 WHEN 'security' THEN 0xE002 WHEN 'host' THEN 0xE003
            WHEN 'storage' THEN 0xE004 WHEN 'terminal' THEN 0xE005 WHEN 'environment' THEN 0xE006
            WHEN 'software' THEN 0xE007 WHEN 'cloud' THEN 0xE008 WHEN 'other' THEN 0xE009 ELSE 0xE000 END)
        || char(28, 983040 + old.contract_id, CASE old.status
            WHEN 'in_stock' THEN 0xE001 WHEN 'in_service' THEN 0xE002 WHEN 'under_repair' THEN 0xE003
            WHEN 'retired' THEN 0xE004 ELSE 0xE000 END)
        || CASE WHEN old.site_id IS NULL THEN '' ELSE char(27, 983040 + old.contract_id, 983040 + old.site_id % 131072) END
        || CASE WHEN old.supplier_id IS NULL THEN '' ELSE char(26, 983040 + old.contract_id, 983040 + old.supplier_id % 131072) END,
        lower(old.search_text) || '  ');
END;
CREATE TRIGGER asset_search_update
AFTER UPDATE OF id, contract_id, kind, status, site_id, supplier_id, search_text ON asset BEGIN
    INSERT INTO asset_search (asset_search, rowid, scope, body)
    VALUES ('delete', old.id,
        char(30, 983040 + old.contract_id, 30)
        || char(29, 983040 + old.contract_id, CASE old.kind
            WHEN 'network' THEN 0xE001 WHEN 'security' THEN 0xE002 WHEN 'host' THEN 0xE003
            WHEN 'storage' THEN 0xE004 WHEN 'terminal' THEN 0xE005 WHEN 'environment' THEN 0xE006
            WHEN 'software' THEN 0xE007 WHEN 'cloud' THEN 0xE008 WHEN 'other' THEN 0xE009 ELSE 0xE000 END)
        || char(28, 983040 + old.contract_id, CASE old.status
            WHEN 'in_stock' THEN 0xE001 WHEN 'in_service' THEN 0xE002 WHEN 'under_repair' THEN 0xE003
            WHEN 'retired' THEN 0xE004 ELSE 0xE000 END)
        || CASE WHEN old.site_id IS NULL THEN '' ELSE char(27, 983040 + old.contract_id, 983040 + old.site_id % 131072) END
        || CASE WHEN old.supplier_id IS NULL THEN '' ELSE char(26, 983040 + old.contract_id, 983040 + old.supplier_id % 131072) END,
        lower(old.search_text) || '  ');
    INSERT INTO asset_search (rowid, scope, body) SELECT id, scope, body FROM asset_search_row WHERE id = new.id;
END;

INSERT INTO asset_search (rowid, scope, body) SELECT id, scope, body FROM asset_search_row;
