// The bindings scenario in Go (mattn/go-sqlite3 from Debian's
// golang-github-mattn-go-sqlite3-dev, linked to Debian's libsqlite3).
// Run from a directory holding persistmap.so; prints "ok sqlite <version>".
// The lines between the [readme] markers are copied into the README.
package main

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/mattn/go-sqlite3"
)

func check(cond bool, format string, args ...interface{}) {
	if !cond {
		fmt.Fprintf(os.Stderr, "FAILED: "+format+"\n", args...)
		os.Exit(1)
	}
}

func must(err error, what string) {
	check(err == nil, "%s: %v", what, err)
}

func scalar(db *sql.DB, query string, args ...interface{}) interface{} {
	var v interface{}
	err := db.QueryRow(query, args...).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	must(err, query)
	return v
}

func main() {
	// [readme]
	sql.Register("sqlite3_persistmap", &sqlite3.SQLiteDriver{
		Extensions: []string{"./persistmap"}, // loaded into each new connection
	})
	db, err := sql.Open("sqlite3_persistmap", "app.db")
	// [/readme]
	must(err, "open")
	_, err = db.Exec("CREATE VIRTUAL TABLE kv USING persistmap()")
	must(err, "create")

	keys := []string{"v:int", "v:real", "v:text", "v:blob", "v:null"}
	values := []interface{}{int64(42), 2.5, "h\u00e9llo", []byte{0, 0xff, 1}, nil}
	types := []string{"integer", "real", "text", "blob", "null"}
	for i, k := range keys {
		_, err = db.Exec("INSERT INTO kv VALUES (?, ?)", k, values[i])
		must(err, "insert "+k)
	}
	_, err = db.Exec("INSERT INTO kv VALUES (?, ?)", 7, "seven")
	must(err, "insert 7")

	for i, k := range keys {
		var v interface{}
		var typ string
		must(db.QueryRow("SELECT value, typeof(value) FROM kv WHERE key = ?", k).Scan(&v, &typ), k)
		check(typ == types[i], "%s: typeof %s", k, typ)
		if b, ok := v.([]byte); ok && typ == "text" {
			v = string(b)
		}
		check(reflect.DeepEqual(v, values[i]), "%s: %#v", k, v)
	}
	check(scalar(db, "SELECT value FROM kv WHERE key = ?", 7) == "seven", "integer key")
	rows, err := db.Query("SELECT key FROM kv WHERE key GLOB 'v:*' ORDER BY key")
	must(err, "prefix")
	var got []string
	for rows.Next() {
		var k string
		must(rows.Scan(&k), "scan")
		got = append(got, k)
	}
	must(rows.Close(), "rows")
	check(strings.Join(got, ",") == "v:blob,v:int,v:null,v:real,v:text", "prefix: %v", got)

	tx, err := db.Begin()
	must(err, "begin")
	_, err = tx.Exec("INSERT INTO kv VALUES ('tx:commit', 1)")
	must(err, "insert in tx")
	must(tx.Commit(), "commit")
	tx, err = db.Begin()
	must(err, "begin")
	_, err = tx.Exec("INSERT INTO kv VALUES ('tx:rollback', 1)")
	must(err, "insert in tx")
	must(tx.Rollback(), "rollback")
	must(db.Close(), "close")

	db, err = sql.Open("sqlite3_persistmap", "app.db")
	must(err, "reopen")
	check(scalar(db, "SELECT count(*) FROM kv") == int64(7), "count after reopen")
	check(scalar(db, "SELECT value FROM kv WHERE key = 'tx:commit'") == int64(1), "committed")
	check(scalar(db, "SELECT value FROM kv WHERE key = 'tx:rollback'") == nil, "rolled back")
	blob, _ := scalar(db, "SELECT value FROM kv WHERE key = 'v:blob'").([]byte)
	check(bytes.Equal(blob, []byte{0, 0xff, 1}), "reopen: %v", blob)

	_, err = db.Exec("INSERT INTO kv VALUES ('v:int', 0)")
	var se sqlite3.Error
	check(errors.As(err, &se), "no sqlite3.Error for a duplicate key: %v", err)
	check(se.Code == sqlite3.ErrConstraint, "code %v", se.Code)
	check(strings.HasPrefix(err.Error(), "persistmap: key 'v:int' already exists"), "message: %v", err)

	var version string
	must(db.QueryRow("SELECT sqlite_version()").Scan(&version), "version")
	must(db.Close(), "close")
	fmt.Printf("ok sqlite %s\n", version)
}
