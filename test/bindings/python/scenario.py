"""The bindings scenario with Python's sqlite3 module (Debian's /usr/bin/python3).

Run from a directory holding persistmap.so; prints 'ok sqlite <version>'.
The lines between the [readme] markers are copied into the README.
"""
import sqlite3


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def open_db():
    # [readme]
    import sqlite3

    con = sqlite3.connect("app.db", isolation_level=None)  # autocommit; BEGIN when you want
    con.enable_load_extension(True)
    con.load_extension("./persistmap")
    con.enable_load_extension(False)
    # [/readme]
    return con


VALUES = {"v:int": 42, "v:real": 2.5, "v:text": "h\u00e9llo", "v:blob": b"\x00\xff\x01", "v:null": None}
TYPES = {"v:int": "integer", "v:real": "real", "v:text": "text", "v:blob": "blob", "v:null": "null"}

con = open_db()
con.execute("CREATE VIRTUAL TABLE kv USING persistmap()")
for key, value in VALUES.items():
    con.execute("INSERT INTO kv VALUES (?, ?)", (key, value))
con.execute("INSERT INTO kv VALUES (?, ?)", (7, "seven"))

for key, value in VALUES.items():
    got, typ = con.execute("SELECT value, typeof(value) FROM kv WHERE key = ?", (key,)).fetchone()
    check(got == value and type(got) is type(value), f"{key}: {got!r}")
    check(typ == TYPES[key], f"{key}: typeof {typ}")
check(con.execute("SELECT value FROM kv WHERE key = 7").fetchone() == ("seven",), "integer key")
keys = [r[0] for r in con.execute("SELECT key FROM kv WHERE key GLOB 'v:*' ORDER BY key")]
check(keys == sorted(VALUES), f"prefix: {keys}")

con.execute("BEGIN")
con.execute("INSERT INTO kv VALUES ('tx:commit', 1)")
con.execute("COMMIT")
con.execute("BEGIN")
con.execute("INSERT INTO kv VALUES ('tx:rollback', 1)")
con.execute("ROLLBACK")
con.close()

con = open_db()
check(con.execute("SELECT count(*) FROM kv").fetchone()[0] == 7, "count after reopen")
check(con.execute("SELECT value FROM kv WHERE key = 'tx:commit'").fetchone() == (1,), "committed")
check(con.execute("SELECT value FROM kv WHERE key = 'tx:rollback'").fetchone() is None, "rolled back")
check(con.execute("SELECT value FROM kv WHERE key = 'v:blob'").fetchone() == (b"\x00\xff\x01",), "reopen")
try:
    con.execute("INSERT INTO kv VALUES ('v:int', 0)")
    check(False, "no exception for a duplicate key")
except sqlite3.IntegrityError as e:
    check(str(e).startswith("persistmap: key 'v:int' already exists"), f"message: {e}")
    check(getattr(e, "sqlite_errorname", "SQLITE_CONSTRAINT").startswith("SQLITE_CONSTRAINT"),
          f"code: {getattr(e, 'sqlite_errorname', None)}")
version = con.execute("SELECT sqlite_version()").fetchone()[0]
con.close()
print(f"ok sqlite {version}")
