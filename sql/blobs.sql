-- Content-addressed blobs (muscle's storage): the key is the hash of the
-- content, so INSERT OR IGNORE stores each content once. persistmap_hash is
-- XXH3-128: fast, but not collision-resistant against an adversary (use
-- SHA-256 where someone else chooses the content). Run from the repository
-- root:
--
--   sqlite3 :memory: < sql/blobs.sql
.load ./persistmap
.mode box

CREATE VIRTUAL TABLE temp.blobs USING persistmap(path='/tmp/persistmap-blobs.pmap');

-- Put.
INSERT OR IGNORE INTO blobs VALUES (persistmap_hash('hello world'), CAST('hello world' AS BLOB));
SELECT changes() AS stored;
INSERT OR IGNORE INTO blobs VALUES (persistmap_hash('hello world'), CAST('hello world' AS BLOB));
SELECT changes() AS stored;
INSERT OR IGNORE INTO blobs
  SELECT persistmap_hash(b), b FROM (SELECT zeroblob(1000) AS b UNION ALL SELECT x'00FF');

-- Enumerate the pointers.
SELECT hex(key) AS pointer, length(value) AS bytes FROM blobs ORDER BY bytes;

-- Get by pointer; a missing pointer is no row (ErrNotFound).
SELECT CAST(value AS TEXT) AS content FROM blobs WHERE key = persistmap_hash('hello world');
SELECT count(*) AS found FROM blobs WHERE key = persistmap_hash('missing');

-- Every blob still matches its pointer.
SELECT count(*) AS intact FROM blobs WHERE key = persistmap_hash(value);

-- A read-only table on the same store: reads work, writes fail with
-- SQLITE_READONLY (the error below is expected).
CREATE VIRTUAL TABLE temp.blobs_ro USING persistmap(path='/tmp/persistmap-blobs.pmap', mode='readonly');
SELECT count(*) AS readable FROM blobs_ro;
INSERT INTO blobs_ro VALUES (persistmap_hash('x'), CAST('x' AS BLOB));

DROP TABLE blobs_ro;
DROP TABLE blobs;
