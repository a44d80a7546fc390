-- persistmap quick start. From the repository root, after make:
--
--   sqlite3 -bail :memory: < sql/quickstart.sql        (or: make demo)
--
-- A persistmap table keeps its rows in a store directory. This demo runs
-- in an in-memory database, so its tables go in the temp schema, where a
-- store may live anywhere: /tmp/persistmap-quickstart*.pmap. DROP TABLE at
-- the end deletes both directories again.
.load ./persistmap
.mode box

CREATE VIRTUAL TABLE temp.kv USING persistmap(path='/tmp/persistmap-quickstart.pmap');

-- Write: a plain INSERT refuses a key that exists; OR REPLACE overwrites.
INSERT INTO kv VALUES ('user:1', json('{"name":"ada"}')),
                      ('user:2', json('{"name":"grace"}')),
                      ('hits', 0);
INSERT OR REPLACE INTO kv VALUES ('user:2', json('{"name":"alan"}'));

-- A read-modify-write in one statement is atomic.
UPDATE kv SET value = value + 1 WHERE key = 'hits';
UPDATE kv SET value = value + 1 WHERE key = 'hits';

-- Read: a hash lookup, a batch of lookups, a "collection" by key prefix.
SELECT value FROM kv WHERE key = 'hits';
SELECT key, value FROM kv WHERE key IN ('user:1', 'nobody');
SELECT key, json_extract(value, '$.name') AS name FROM kv WHERE key GLOB 'user:*' ORDER BY key;

-- A queue: a NULL key takes the next integer key; the oldest item comes
-- first in sequence order, without a sort.
CREATE VIRTUAL TABLE temp.jobs USING persistmap(path='/tmp/persistmap-quickstart-jobs.pmap');
INSERT INTO jobs(value) VALUES ('send mail'), ('resize image');
SELECT persistmap_last_key() AS last_key;
SELECT key, value FROM jobs ORDER BY seq LIMIT 1;
DELETE FROM jobs WHERE key = 1;
SELECT changes() AS popped;

-- Make it durable now, and look at the figures.
SELECT persistmap_sync('kv') AS synced,
       json_extract(persistmap_stats('kv'), '$.keys') AS keys,
       json_extract(persistmap_stats('kv'), '$.sync') AS sync;

DROP TABLE kv;
DROP TABLE jobs;
