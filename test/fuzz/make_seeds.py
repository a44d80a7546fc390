"""Write the hand-made seeds of test/fuzz/corpus/ (run from the repository
root: /usr/bin/python3 test/fuzz/make_seeds.py). Inputs that found bugs
are kept beside them under names starting with "bug-"; the files named by
a hash are what fuzzing found, merged in with libFuzzer's -merge=1 (only
inputs that reach code or states no other input does):

    build/fuzz/fuzz_sql -merge=1 test/fuzz/corpus/fuzz_sql build/fuzz/corpus-fuzz_sql

fuzz_recovery's input (see fuzz_recovery.c): a flags byte, then parts
[file][op][len:2][bytes]. The template store's files, in that order:
0 MANIFEST, 1 000001.hint, 2 000001.log, 3 000002.hint, 4 000002.log,
5 000003.log (the active segment).
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIX_REC, FIX_SEG, FIX_HINT, FIX_MAN, SHRINK, REOPEN, READONLY_FIRST = 1, 2, 4, 8, 16, 32, 64
ALL = FIX_REC | FIX_SEG | FIX_HINT | FIX_MAN
MANIFEST, HINT1, SEG1, HINT2, SEG2, ACTIVE = range(6)
REPLACE, PATCH, TRUNCATE, DELETE, APPEND = range(5)
SEG_HEADER = 64


def part(f, op, payload=b""):
    return bytes([f, op]) + struct.pack("<H", len(payload)) + payload


def patch(f, off, data):
    return part(f, PATCH, struct.pack("<H", off) + data)


def truncate(f, n):
    return part(f, TRUNCATE, struct.pack("<H", n))


def record(rtype, key, vtype, value, seq):
    h = struct.pack("<QBBBBIIIQ", 0, rtype, 3, vtype, 0, len(key), len(value), 0, seq)
    body = h + key + value
    return body + b"\0" * (-len(body) % 8)


RECOVERY = {
    "valid-store": bytes([ALL | SHRINK | REOPEN]),
    "valid-no-fixups": bytes([REOPEN]),
    "valid-store-readonly-first": bytes([ALL | SHRINK | REOPEN | READONLY_FIRST]),
    # a value length of 0xFFFFFFFF in a sealed segment, and in the active one
    "vlen-ffffffff-sealed": bytes([REOPEN]) + patch(SEG1, SEG_HEADER + 16, b"\xff\xff\xff\xff"),
    "vlen-ffffffff-active": bytes([ALL | REOPEN]) + patch(ACTIVE, SEG_HEADER + 16, b"\xff\xff\xff\xff"),
    "klen-ffffffff-active": bytes([ALL]) + patch(ACTIVE, SEG_HEADER + 12, b"\xff\xff\xff\xff"),
    # a hint whose entry count, or whose first entry's value length, lies
    "hint-count-lies": bytes([ALL | REOPEN]) + patch(HINT1, 48, b"\xff\xff\xff\xff\xff\xff\xff\x7f"),
    "hint-vlen-lies": bytes([ALL | REOPEN]) + patch(HINT1, 64 + 8, b"\xf0\xff\xff\x3f"),
    "hint-offset-lies": bytes([ALL | REOPEN]) + patch(HINT2, 64 + 16, b"\x00\x00\x00\x10"),
    "hint-short": bytes([ALL]) + truncate(HINT1, 66),
    # truncated records and files
    "active-torn-mid-record": bytes([ALL | REOPEN]) + truncate(ACTIVE, SEG_HEADER + 40),
    "active-header-only": bytes([ALL | REOPEN]) + truncate(ACTIVE, SEG_HEADER),
    "active-short-header": bytes([ALL]) + truncate(ACTIVE, 20),
    "sealed-truncated": bytes([ALL | SHRINK]) + truncate(SEG2, 30000),
    "sealed-empty": bytes([ALL]) + part(SEG1, REPLACE),
    "hint-deleted": bytes([ALL | SHRINK | REOPEN]) + part(HINT2, DELETE),
    "active-deleted": bytes([ALL]) + part(ACTIVE, DELETE),
    "manifest-deleted": bytes([ALL]) + part(MANIFEST, DELETE),
    # garbage after the last group, with and without valid checksums
    "active-garbage-tail": bytes([REOPEN]) + part(ACTIVE, APPEND, b"\x5a" * 200),
    "active-valid-tail-no-commit": bytes([ALL | REOPEN]) + part(
        ACTIVE, APPEND, record(1, b"orphan", 3, b"no commit follows", 999)),
    "active-commit-lies": bytes([ALL | REOPEN]) + part(
        ACTIVE, APPEND, record(1, b"k", 5, b"", 1000) + record(3, b"", 4, b"\xff" * 32, 1000)),
    # a manifest with valid checksum but fields that do not add up
    "manifest-short": bytes([ALL]) + part(MANIFEST, REPLACE, b"PMAPMAN1" + struct.pack("<II", 1, 0) + b"\0" * 12),
    "manifest-nsegs-lies": bytes([ALL]) + patch(MANIFEST, 100, b"\xff\xff\xff\x0f"),
    "manifest-active-missing": bytes([ALL]) + patch(MANIFEST, 96, b"\x09\x00\x00\x00"),
    "manifest-creator-lies": bytes([ALL]) + patch(MANIFEST, 104, b"\xff\xff\xff\xff"),
}


# fuzz_sql: SQL run against main.db holding kv, q (persistmap) and t.
SQL = {
    "lookups": "SELECT value FROM kv WHERE key = 1; SELECT key, value FROM kv WHERE key IN (1, 'k', x'6b', 2.5);"
               "SELECT * FROM kv WHERE key = 1.0; SELECT typeof(key), typeof(value) FROM kv;",
    "plans": "SELECT key FROM kv WHERE key GLOB 'b*'; SELECT key FROM kv WHERE key LIKE 'B%';"
             "SELECT key FROM kv WHERE key >= 'a' AND key < 'c'; SELECT key, seq FROM kv ORDER BY seq DESC LIMIT 2 OFFSET 1;"
             "SELECT key FROM kv WHERE seq > 2; SELECT k.key FROM t JOIN kv k ON k.key = t.a;",
    "writes": "INSERT INTO kv VALUES ('n', 1); INSERT OR REPLACE INTO kv VALUES ('n', 2); INSERT OR IGNORE INTO kv VALUES ('n', 3);"
              "UPDATE kv SET value = value + 1 WHERE key = 'n'; UPDATE kv SET key = 'm' WHERE key = 'n';"
              "DELETE FROM kv WHERE key GLOB 'm*'; INSERT INTO kv VALUES (NULL, 'auto'); SELECT persistmap_last_key();",
    "queue": "INSERT INTO q(value) VALUES ('d'); SELECT key, value FROM q ORDER BY seq LIMIT 1;"
             "DELETE FROM q WHERE key = (SELECT key FROM q ORDER BY seq LIMIT 1); SELECT changes();",
    "transactions": "BEGIN; INSERT INTO kv VALUES ('x', 1); SAVEPOINT a; DELETE FROM kv; ROLLBACK TO a;"
                    "INSERT INTO t VALUES (9, 9); RELEASE a; COMMIT; BEGIN; INSERT INTO kv VALUES ('y', 2); ROLLBACK;",
    "functions": "SELECT persistmap_version(), persistmap_hash('a'), persistmap_hash(x'00'), persistmap_debug();"
                 "SELECT persistmap_stats('kv'), persistmap_check('q'), persistmap_sync('kv'), persistmap_sync('kv', 10);"
                 "SELECT persistmap_shrink('kv'); SELECT persistmap_recover('q'); SELECT persistmap_stats('main.kv');",
    "tables": "CREATE VIRTUAL TABLE u USING persistmap(path='u.pmap', segment_size='64KB', auto_shrink=0, cache_size='-1');"
              "INSERT INTO u SELECT key, value FROM kv; ALTER TABLE u RENAME TO v; SELECT * FROM v; DROP TABLE v;"
              "CREATE VIRTUAL TABLE w USING persistmap(mode='readonly', path='main.db-kv.pmap'); SELECT count(*) FROM w;"
              "INSERT INTO w VALUES (1, 2); DROP TABLE w;",
    "bad-options": "CREATE VIRTUAL TABLE a USING persistmap(cache_sise=1); CREATE VIRTUAL TABLE b USING persistmap(path='../x');"
                   "CREATE VIRTUAL TABLE c USING persistmap(sync=sometimes); SELECT * FROM a; DROP TABLE a; DROP TABLE b;",
    "views-triggers": "CREATE VIEW vv AS SELECT key, value FROM kv WHERE key GLOB 'k*';"
                      "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO q(value) VALUES (new.b); END;"
                      "INSERT INTO t VALUES (5, 'job'); SELECT * FROM vv; SELECT count(*) FROM q;",
    "big-values": "INSERT INTO kv VALUES ('z', zeroblob(90000)); UPDATE kv SET value = randomblob(50000) WHERE key = 'z';"
                  "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 300)"
                  " INSERT INTO kv SELECT 'r' || i, randomblob(i * 10) FROM c; SELECT persistmap_shrink('kv');"
                  "SELECT count(*), sum(length(value)) FROM kv;",
    "odd-keys": "INSERT INTO kv VALUES (-0.0, 1), (9223372036854775807, 2), (1e308, 3), ('', 4), (x'', 5);"
                "INSERT INTO kv VALUES (NULL, 6); SELECT key FROM kv WHERE key = 0; INSERT INTO kv VALUES (0.0, 7);"
                "SELECT * FROM kv WHERE seq = 1; UPDATE kv SET seq = 5; INSERT INTO kv(key, value, seq) VALUES (1, 2, 3);",
}


def main():
    out = os.path.join(HERE, "corpus", "fuzz_recovery")
    os.makedirs(out, exist_ok=True)
    for name, data in RECOVERY.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(RECOVERY)} seeds in {out}")
    out = os.path.join(HERE, "corpus", "fuzz_sql")
    os.makedirs(out, exist_ok=True)
    for name, text in SQL.items():
        with open(os.path.join(out, name + ".sql"), "w") as f:
            f.write(text + "\n")
    print(f"{len(SQL)} seeds in {out}")


if __name__ == "__main__":
    main()
