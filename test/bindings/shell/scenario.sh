#!/bin/sh
# The bindings scenario in the sqlite3 shell (Debian's sqlite3).
# Run from a directory holding persistmap.so; prints 'ok sqlite <version>'.
# The lines between the [readme] markers are copied into the README.
set -eu
SQLITE3=${SQLITE3:-sqlite3}

fail() { echo "FAILED: $*" >&2; exit 1; }

# expect WHAT EXPECTED ACTUAL
expect() {
  [ "$2" = "$3" ] || fail "$1: expected [$2], got [$3]"
}

first=$("$SQLITE3" -bail -list app.db <<'EOF'
-- [readme]
.load ./persistmap
-- [/readme]
CREATE VIRTUAL TABLE kv USING persistmap();
INSERT INTO kv VALUES ('v:int', 42), ('v:real', 2.5), ('v:text', 'héllo'),
                      ('v:blob', x'00ff01'), ('v:null', NULL), (7, 'seven');
SELECT key, typeof(value), quote(value) FROM kv WHERE key = 'v:int';
SELECT key, typeof(value), quote(value) FROM kv WHERE key = 'v:real';
SELECT key, typeof(value), quote(value) FROM kv WHERE key = 'v:text';
SELECT key, typeof(value), quote(value) FROM kv WHERE key = 'v:blob';
SELECT key, typeof(value), quote(value) FROM kv WHERE key = 'v:null';
SELECT typeof(key), value FROM kv WHERE key = 7;
SELECT group_concat(key, ',') FROM (SELECT key FROM kv WHERE key GLOB 'v:*' ORDER BY key);
BEGIN;
INSERT INTO kv VALUES ('tx:commit', 1);
COMMIT;
BEGIN;
INSERT INTO kv VALUES ('tx:rollback', 1);
ROLLBACK;
EOF
) || fail "first session"
expect "first session" "v:int|integer|42
v:real|real|2.5
v:text|text|'héllo'
v:blob|blob|X'00FF01'
v:null|null|NULL
integer|seven
v:blob,v:int,v:null,v:real,v:text" "$first"

second=$("$SQLITE3" -bail -list app.db <<'EOF'
.load ./persistmap
SELECT count(*) FROM kv;
SELECT quote(value) FROM kv WHERE key = 'tx:commit';
SELECT count(*) FROM kv WHERE key = 'tx:rollback';
SELECT quote(value) FROM kv WHERE key = 'v:blob';
EOF
) || fail "second session"
expect "after reopening" "7
1
0
X'00FF01'" "$second"

# An error: the shell prints it and, with -bail, exits with the error code.
rc=0
err=$("$SQLITE3" -bail app.db ".load ./persistmap" "INSERT INTO kv VALUES ('v:int', 0)" 2>&1 >/dev/null) || rc=$?
[ "$rc" -ne 0 ] || fail "a duplicate key did not fail"
case "$err" in
  *"persistmap: key 'v:int' already exists"*) ;;
  *) fail "unexpected error text: $err" ;;
esac

echo "ok sqlite $("$SQLITE3" :memory: 'SELECT sqlite_version()')"
