# The bindings scenario in Tcl (Debian's libsqlite3-tcl, tclsh).
# Run from a directory holding persistmap.so; prints 'ok sqlite <version>'.
# The lines between the [readme] markers are copied into the README.

proc check {cond what} {
    if {![uplevel 1 [list expr $cond]]} {
        puts stderr "FAILED: $what"
        exit 1
    }
}

proc open_db {} {
    # [readme]
    package require sqlite3

    sqlite3 db app.db
    db enable_load_extension 1
    db eval {SELECT load_extension('./persistmap')}
    db enable_load_extension 0
    # [/readme]
}

open_db
db eval {CREATE VIRTUAL TABLE kv USING persistmap()}
set int [expr {42}]        ;# a number, not a string, so it binds as INTEGER
set real [expr {2.5}]
set text "h\u00e9llo"
set blob [binary format c3 {0 255 1}]
db eval {INSERT INTO kv VALUES ('v:int', $int)}
db eval {INSERT INTO kv VALUES ('v:real', $real)}
db eval {INSERT INTO kv VALUES ('v:text', $text)}
db eval {INSERT INTO kv VALUES ('v:blob', @blob)}
db eval {INSERT INTO kv VALUES ('v:null', NULL)}
db eval {INSERT INTO kv VALUES (7, 'seven')}

foreach {key type want} [list v:int integer 42 v:real real 2.5 v:text text $text v:blob blob $blob] {
    db eval {SELECT value, typeof(value) AS t FROM kv WHERE key = $key} row {}
    check {$row(t) eq $type} "$key: typeof $row(t)"
    check {$row(value) eq $want} "$key: $row(value)"
}
check {[db onecolumn {SELECT typeof(value) FROM kv WHERE key = 'v:null'}] eq "null"} "v:null"
check {[db onecolumn {SELECT value FROM kv WHERE key = 7}] eq "seven"} "integer key"
set keys [db eval {SELECT key FROM kv WHERE key GLOB 'v:*' ORDER BY key}]
check {$keys eq {v:blob v:int v:null v:real v:text}} "prefix: $keys"

db transaction {
    db eval {INSERT INTO kv VALUES ('tx:commit', 1)}
}
catch {
    db transaction {
        db eval {INSERT INTO kv VALUES ('tx:rollback', 1)}
        error "roll back"
    }
}
db close

open_db
check {[db onecolumn {SELECT count(*) FROM kv}] == 7} "count after reopen"
check {[db onecolumn {SELECT value FROM kv WHERE key = 'tx:commit'}] == 1} "committed"
check {[db exists {SELECT 1 FROM kv WHERE key = 'tx:rollback'}] == 0} "rolled back"
check {[db onecolumn {SELECT value FROM kv WHERE key = 'v:blob'}] eq $blob} "reopen"

if {[catch {db eval {INSERT INTO kv VALUES ('v:int', 0)}} msg opts]} {
    check {[string match "persistmap: key 'v:int' already exists*" $msg]} "message: $msg"
    check {[db errorcode] == 19} "error code [db errorcode]"
} else {
    check 0 "no error for a duplicate key"
}
set version [db onecolumn {SELECT sqlite_version()}]
db close
puts "ok sqlite $version"
