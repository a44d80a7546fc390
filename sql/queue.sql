-- A durable FIFO queue (go-durostore): push, peek at the oldest item, pop
-- it with changes() telling the consumer it won. Indexes are never reused,
-- not even after a restart. A producer and a consumer may be two processes
-- sharing the store. Run from the repository root:
--
--   sqlite3 :memory: < sql/queue.sql
.load ./persistmap
.mode box

CREATE VIRTUAL TABLE temp.q USING persistmap(path='/tmp/persistmap-queue.pmap', sync='full');

-- Write(items...): one statement is one atomic commit; a NULL key takes
-- the next integer.
INSERT INTO q(value) VALUES ('job 1'), ('job 2'), ('job 3');
SELECT persistmap_last_key() AS last_index;

-- Length and Size.
SELECT count(*) AS length, sum(length(value)) AS size FROM q;

-- Read(): the oldest item, in sequence order, without sorting the queue.
SELECT key, value FROM q ORDER BY seq LIMIT 1;
EXPLAIN QUERY PLAN SELECT key, value FROM q ORDER BY seq LIMIT 1;

-- Pop: delete the oldest by its key. changes() = 1: this consumer has it;
-- 0: another consumer took it first.
DELETE FROM q WHERE key = 1;
SELECT changes() AS won;
DELETE FROM q WHERE key = 1;
SELECT changes() AS won;

-- Or pop in one statement (the read happens under the writer lock).
DELETE FROM q WHERE key = (SELECT key FROM q ORDER BY seq LIMIT 1);
SELECT changes() AS popped, (SELECT group_concat(value) FROM q) AS left;

-- Read(i).
SELECT value FROM q WHERE key = 3;

-- Empty it and push again: the next index is 4, never 1.
DELETE FROM q;
INSERT INTO q(value) VALUES ('job 4');
SELECT key, value FROM q;

DROP TABLE q;
