"""Loading persistmap into a Python whose sqlite3 module has no
enable_load_extension (pyenv's and other Pythons built without
--enable-loadable-sqlite-extensions), through ctypes.

It registers persistmap's entry point with sqlite3_auto_extension in the
libsqlite3 that the sqlite3 module itself uses, so every connection opened
afterwards has it. It needs a sqlite3 module linked to a shared libsqlite3
(as pyenv's builds are: `ldd` on _sqlite3's file shows it); with SQLite
compiled into the module it fails at once (AttributeError), never silently.

Run from a directory holding persistmap.so with the Python under test;
prints 'ok sqlite <version>'. The [readme] lines go into the README.
"""
import sqlite3

has_method = hasattr(sqlite3.connect(":memory:"), "enable_load_extension")

# [readme]
import ctypes
import sqlite3
import _sqlite3

# The libsqlite3 the sqlite3 module uses, reached through its own extension file.
libsqlite3 = ctypes.CDLL(_sqlite3.__file__)
persistmap = ctypes.CDLL("./persistmap.so")
ENTRY = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


@ENTRY
def load_persistmap(db, err, api):
    rc = persistmap.sqlite3_persistmap_init(ctypes.c_void_p(db), ctypes.c_void_p(err),
                                            ctypes.c_void_p(api))
    return 0 if rc == 256 else rc     # SQLITE_OK_LOAD_PERMANENTLY is success here


libsqlite3.sqlite3_auto_extension(load_persistmap)   # keep load_persistmap referenced

con = sqlite3.connect("app.db", isolation_level=None)  # has persistmap
# [/readme]


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


con.execute("CREATE VIRTUAL TABLE kv USING persistmap()")
con.execute("INSERT INTO kv VALUES (?, ?)", ("v:blob", b"\x00\xff\x01"))
con.execute("INSERT INTO kv VALUES (?, ?)", ("v:real", 2.5))
check(con.execute("SELECT value FROM kv WHERE key = 'v:blob'").fetchone() == (b"\x00\xff\x01",), "blob")
con.execute("BEGIN")
con.execute("INSERT INTO kv VALUES ('tx:rollback', 1)")
con.execute("ROLLBACK")
con.close()
con = sqlite3.connect("app.db", isolation_level=None)
check([r[0] for r in con.execute("SELECT key FROM kv WHERE key GLOB 'v:*' ORDER BY key")]
      == ["v:blob", "v:real"], "reopen")
try:
    con.execute("INSERT INTO kv VALUES ('v:real', 0)")
    check(False, "no exception for a duplicate key")
except sqlite3.IntegrityError as e:
    check(str(e).startswith("persistmap: key 'v:real' already exists"), f"message: {e}")
version = con.execute("SELECT sqlite_version()").fetchone()[0]
con.close()
print(f"ok sqlite {version} ({'with' if has_method else 'without'} enable_load_extension)")
