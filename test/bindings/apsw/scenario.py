"""The bindings scenario with APSW (Debian's python3-apsw, /usr/bin/python3).

Run from a directory holding persistmap.so; prints 'ok sqlite <version>'.
The lines between the [readme] markers are copied into the README.
"""
import apsw


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def open_db():
    # [readme]
    import apsw

    con = apsw.Connection("app.db")
    con.enableloadextension(True)      # APSW 3.44 and later also: enable_load_extension
    con.loadextension("./persistmap")
    con.enableloadextension(False)
    # [/readme]
    return con


def one(con, sql, params=()):
    rows = list(con.execute(sql, params))
    return rows[0] if rows else None


VALUES = {"v:int": 42, "v:real": 2.5, "v:text": "h\u00e9llo", "v:blob": b"\x00\xff\x01", "v:null": None}
TYPES = {"v:int": "integer", "v:real": "real", "v:text": "text", "v:blob": "blob", "v:null": "null"}

con = open_db()
con.execute("CREATE VIRTUAL TABLE kv USING persistmap()")
for key, value in VALUES.items():
    con.execute("INSERT INTO kv VALUES (?, ?)", (key, value))
con.execute("INSERT INTO kv VALUES (?, ?)", (7, "seven"))

for key, value in VALUES.items():
    got, typ = one(con, "SELECT value, typeof(value) FROM kv WHERE key = ?", (key,))
    check(got == value and type(got) is type(value), f"{key}: {got!r}")
    check(typ == TYPES[key], f"{key}: typeof {typ}")
check(one(con, "SELECT value FROM kv WHERE key = 7") == ("seven",), "integer key")
keys = [r[0] for r in con.execute("SELECT key FROM kv WHERE key GLOB 'v:*' ORDER BY key")]
check(keys == sorted(VALUES), f"prefix: {keys}")

with con:                                  # a savepoint, released: committed
    con.execute("INSERT INTO kv VALUES ('tx:commit', 1)")
try:
    with con:                              # an exception rolls the savepoint back
        con.execute("INSERT INTO kv VALUES ('tx:rollback', 1)")
        raise KeyError("roll back")
except KeyError:
    pass
con.close()

con = open_db()
check(one(con, "SELECT count(*) FROM kv") == (7,), "count after reopen")
check(one(con, "SELECT value FROM kv WHERE key = 'tx:commit'") == (1,), "committed")
check(one(con, "SELECT value FROM kv WHERE key = 'tx:rollback'") is None, "rolled back")
check(one(con, "SELECT value FROM kv WHERE key = 'v:blob'") == (b"\x00\xff\x01",), "reopen")
try:
    con.execute("INSERT INTO kv VALUES ('v:int', 0)")
    check(False, "no exception for a duplicate key")
except apsw.ConstraintError as e:
    check("persistmap: key 'v:int' already exists" in str(e), f"message: {e}")
version = one(con, "SELECT sqlite_version()")[0]
con.close()
print(f"ok sqlite {version}")
