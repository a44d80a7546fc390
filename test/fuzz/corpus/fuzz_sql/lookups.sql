SELECT value FROM kv WHERE key = 1; SELECT key, value FROM kv WHERE key IN (1, 'k', x'6b', 2.5);SELECT * FROM kv WHERE key = 1.0; SELECT typeof(key), typeof(value) FROM kv;
