-- Typed persistent maps (go-persist): one table per map, counters, JSON
-- values, and the three sync modes. Run from the repository root:
--
--   sqlite3 :memory: < sql/typed_map.sql
.load ./persistmap
.mode box

-- sync='normal' (the default): a commit returns once the OS has the log,
-- and a background fsync runs every sync_interval (go-persist's SetAsync).
CREATE VIRTUAL TABLE temp.counters USING persistmap(
  path='/tmp/persistmap-typed-counters.pmap', sync='normal', sync_interval='1s');
-- sync='full': a commit returns after fdatasync (go-persist's SetFSync).
CREATE VIRTUAL TABLE temp.users USING persistmap(
  path='/tmp/persistmap-typed-users.pmap', sync='full');
-- sync='off': the log goes to the OS; fsync only when asked (go-persist's
-- Set, then Sync).
CREATE VIRTUAL TABLE temp.settings USING persistmap(
  path='/tmp/persistmap-typed-settings.pmap', sync='off');

-- Counters: each UPDATE reads and writes under the writer lock.
INSERT INTO counters VALUES ('visits', 0), ('errors', 0);
UPDATE counters SET value = value + 1 WHERE key = 'visits';
UPDATE counters SET value = value + 1 WHERE key = 'visits';
UPDATE counters SET value = value + 5 WHERE key = 'errors';
SELECT key, value FROM counters ORDER BY key;

-- JSON values, changed in place.
INSERT INTO users VALUES
  ('u1', json_object('name', 'ada', 'langs', json_array('en'))),
  ('u2', json_object('name', 'alan', 'langs', json_array('en', 'de'))),
  ('u3', json_object('name', 'grace', 'langs', json_array()));
UPDATE users SET value = json_set(value, '$.langs[#]', 'fr') WHERE key = 'u1';
SELECT key, json_extract(value, '$.name') AS name,
       json_array_length(value, '$.langs') AS langs FROM users ORDER BY key;

-- Update, delete, cancel: a transaction that is rolled back leaves no trace.
BEGIN;
UPDATE users SET value = json_set(value, '$.active', json('false')) WHERE key = 'u2';
DELETE FROM users WHERE key = 'u3';
ROLLBACK;
SELECT count(*) AS users, sum(json_extract(value, '$.active') IS NULL) AS untouched FROM users;

-- Every SQLite type comes back as it went in.
INSERT INTO settings VALUES ('retries', 3), ('ratio', 0.25), ('name', 'demo'),
                            ('key', x'CAFE'), ('unset', NULL), ('empty', '');
SELECT key, quote(value) AS value, typeof(value) AS type FROM settings ORDER BY key;

-- Sync: everything committed so far becomes durable (go-persist's Sync and
-- FSyncAll); with a timeout in milliseconds, 0 means "not yet, still going".
SELECT persistmap_sync('settings') AS settings, persistmap_sync('counters', 1000) AS counters;

-- Size, and the engine's figures.
SELECT count(*) AS size FROM settings;
SELECT json_extract(persistmap_stats('users'), '$.sync') AS sync,
       json_extract(persistmap_stats('users'), '$.keys') AS keys;

DROP TABLE counters;
DROP TABLE users;
DROP TABLE settings;
