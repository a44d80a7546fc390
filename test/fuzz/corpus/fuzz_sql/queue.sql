INSERT INTO q(value) VALUES ('d'); SELECT key, value FROM q ORDER BY seq LIMIT 1;DELETE FROM q WHERE key = (SELECT key FROM q ORDER BY seq LIMIT 1); SELECT changes();
