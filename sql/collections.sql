-- Collections of members (dskvs): keys like 'collection/member', read and
-- deleted by prefix. A prefix query scans the keys in memory and reads the
-- values of matching keys only. Run from the repository root:
--
--   sqlite3 :memory: < sql/collections.sql
.load ./persistmap
.mode box

CREATE VIRTUAL TABLE temp.music USING persistmap(path='/tmp/persistmap-collections.pmap');

INSERT INTO music VALUES
  ('artist/daft_punk', json_object('name', 'Daft Punk', 'from', 'Paris')),
  ('artist/air', json_object('name', 'Air', 'from', 'Versailles')),
  ('artist/justice', json_object('name', 'Justice', 'from', 'Paris')),
  ('album/discovery', json_object('artist', 'daft_punk', 'year', 2001)),
  ('album/moon_safari', json_object('artist', 'air', 'year', 1998));

-- Get.
SELECT json_extract(value, '$.year') AS year FROM music WHERE key = 'album/discovery';

-- GetAll(collection), with GLOB or LIKE (LIKE ignores case).
SELECT key, json_extract(value, '$.name') AS name FROM music
 WHERE key GLOB 'artist/*' ORDER BY key;
SELECT key FROM music WHERE key LIKE 'ALBUM/%' ORDER BY key;
EXPLAIN QUERY PLAN SELECT key, value FROM music WHERE key GLOB 'artist/*';

-- Members per collection (keys only: no value is read).
SELECT substr(key, 1, instr(key, '/') - 1) AS collection, count(*) AS members
  FROM music GROUP BY 1 ORDER BY 1;

-- Delete one member, then DeleteAll(collection).
DELETE FROM music WHERE key = 'artist/justice';
DELETE FROM music WHERE key GLOB 'artist/*';
SELECT changes() AS deleted;
SELECT key FROM music ORDER BY key;

DROP TABLE music;
