-- An element store (elstore): elements are immutable, a plain INSERT of an
-- existing id fails, and a small cache keeps the most used values in
-- memory. Run from the repository root:
--
--   sqlite3 :memory: < sql/element_store.sql
.load ./persistmap
.mode box

CREATE VIRTUAL TABLE temp.elements USING persistmap(
  path='/tmp/persistmap-elements.pmap', cache_size='64KB');

-- Put: fails if the id exists (the error below is expected).
INSERT INTO elements VALUES ('el-1', 'first element'), ('el-2', 'second element');
INSERT INTO elements VALUES ('el-1', 'changed?');
SELECT key, value FROM elements ORDER BY key;

-- Has and Get.
SELECT EXISTS (SELECT 1 FROM elements WHERE key = 'el-2') AS has_el2,
       EXISTS (SELECT 1 FROM elements WHERE key = 'el-9') AS has_el9;
SELECT value FROM elements WHERE key = 'el-1';

-- A thousand more elements: the cache holds the hot ones, within 64 KB.
WITH RECURSIVE n(i) AS (SELECT 3 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO elements SELECT 'el-' || i, printf('element %d %.200c', i, '.') FROM n;
SELECT count(*) AS elements, sum(length(value)) AS bytes FROM elements;
SELECT json_extract(persistmap_stats('elements'), '$.cache_capacity') AS cache_capacity,
       json_extract(persistmap_stats('elements'), '$.cache_bytes') <= 65536 AS within_budget;

-- SyncFor(timeout): wait up to a second for the data to be durable.
SELECT persistmap_sync('elements', 1000) AS synced;

-- Remove: DROP TABLE deletes the store, since this table created it.
DROP TABLE elements;
