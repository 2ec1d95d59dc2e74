-- Ledger search without reading every asset (issue 5: list and search at 100,000 assets).
--
-- `asset_search` indexes every 3-character substring (FTS5's trigram tokenizer, case as stored:
-- `search_text` is lower-case already, and lower() folds any ASCII left, as LIKE would) of one row
-- per asset, under the asset's id, with no copy of the text (contentless):
--   scope  the contract, as U+001E, U+F0000 + contract id (a private-use character), U+001E: one
--          trigram, ANDed with the term's in a phrase query so that it finds one contract's assets
--          only. It begins with a control character, which no term looked up in the index holds,
--          so the term list below never wades through it.
--   body   the search text and two spaces, so that every substring of one or two characters
--          begins some trigram.
-- A phrase query of three characters or more finds exactly the assets whose text holds it;
-- `asset_search_terms`, the index's list of trigrams and where each occurs, finds those whose text
-- holds a shorter term (the trigrams that begin with it). The list query checks LIKE on every row
-- it reads all the same (`assets::list`): the index decides which rows are read, never what matches.
--
-- Kept in step with `asset` by triggers, in the writing transaction (create, edit, import,
-- reconciliation). A contentless index forgets a row only when given the values it indexed, which
-- the triggers compute again from the old row.
CREATE VIRTUAL TABLE asset_search USING fts5(
    scope, body, content = '', columnsize = 0, tokenize = 'trigram case_sensitive 1'
);
CREATE VIRTUAL TABLE asset_search_terms USING fts5vocab(asset_search, instance);

CREATE TRIGGER asset_search_insert AFTER INSERT ON asset BEGIN
    INSERT INTO asset_search (rowid, scope, body)
    VALUES (new.id, char(30, 983040 + new.contract_id, 30), lower(new.search_text) || '  ');
END;
CREATE TRIGGER asset_search_delete AFTER DELETE ON asset BEGIN
    INSERT INTO asset_search (asset_search, rowid, scope, body)
    VALUES ('delete', old.id, char(30, 983040 + old.contract_id, 30), lower(old.search_text) || '  ');
END;
CREATE TRIGGER asset_search_update AFTER UPDATE OF id, contract_id, search_text ON asset BEGIN
    INSERT INTO asset_search (asset_search, rowid, scope, body)
    VALUES ('delete', old.id, char(30, 983040 + old.contract_id, 30), lower(old.search_text) || '  ');
    INSERT INTO asset_search (rowid, scope, body)
    VALUES (new.id, char(30, 983040 + new.contract_id, 30), lower(new.search_text) || '  ');
END;

INSERT INTO asset_search (rowid, scope, body)
SELECT id, char(30, 983040 + contract_id, 30), lower(search_text) || '  ' FROM asset;
