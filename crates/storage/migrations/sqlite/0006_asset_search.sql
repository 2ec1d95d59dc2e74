-- Substring search over the ledger without reading every row: an FTS5 index with the trigram
-- tokenizer over `asset.search_text` (serves LIKE '%…%' for three characters or more, Chinese
-- included), kept in step with the table by triggers.
CREATE VIRTUAL TABLE asset_search USING fts5(search_text, content='asset', content_rowid='id', tokenize='trigram');
CREATE TRIGGER asset_search_insert AFTER INSERT ON asset BEGIN
    INSERT INTO asset_search(rowid, search_text) VALUES (new.id, new.search_text);
END;
CREATE TRIGGER asset_search_delete AFTER DELETE ON asset BEGIN
    INSERT INTO asset_search(asset_search, rowid, search_text) VALUES ('delete', old.id, old.search_text);
END;
CREATE TRIGGER asset_search_update AFTER UPDATE OF search_text ON asset BEGIN
    INSERT INTO asset_search(asset_search, rowid, search_text) VALUES ('delete', old.id, old.search_text);
    INSERT INTO asset_search(rowid, search_text) VALUES (new.id, new.search_text);
END;
INSERT INTO asset_search(asset_search) VALUES ('rebuild');
