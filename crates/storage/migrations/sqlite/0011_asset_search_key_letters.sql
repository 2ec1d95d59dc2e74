-- Nothing on SQLite: migration 0011 changes how PostgreSQL's search key writes an asset's kind and
-- status (see the PostgreSQL file). SQLite's index (0008) already marks them with one character.
SELECT 1;
