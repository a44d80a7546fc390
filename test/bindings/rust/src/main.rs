//! The bindings scenario in Rust (rusqlite 0.28, Debian's libsqlite3).
//! Run from a directory holding persistmap.so; prints "ok sqlite <version>".
//! The lines between the [readme] markers are copied into the README.
use rusqlite::types::Value;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use std::process::exit;

fn check(cond: bool, what: &str) {
    if !cond {
        eprintln!("FAILED: {}", what);
        exit(1);
    }
}

fn open_db() -> rusqlite::Result<Connection> {
    // [readme]
    let conn = Connection::open("app.db")?;
    unsafe {
        // loading native code is unsafe: only load a library you trust
        conn.load_extension_enable()?;
        conn.load_extension("./persistmap", None)?;
    }
    conn.load_extension_disable()?;
    // [/readme]
    Ok(conn)
}

fn run() -> rusqlite::Result<String> {
    let conn = open_db()?;
    conn.execute("CREATE VIRTUAL TABLE kv USING persistmap()", [])?;
    let rows: Vec<(&str, Value, &str)> = vec![
        ("v:int", Value::Integer(42), "integer"),
        ("v:real", Value::Real(2.5), "real"),
        ("v:text", Value::Text("h\u{e9}llo".into()), "text"),
        ("v:blob", Value::Blob(vec![0, 0xff, 1]), "blob"),
        ("v:null", Value::Null, "null"),
    ];
    for (key, value, _) in &rows {
        conn.execute("INSERT INTO kv VALUES (?1, ?2)", params![key, value])?;
    }
    conn.execute("INSERT INTO kv VALUES (?1, ?2)", params![7, "seven"])?;

    for (key, value, typ) in &rows {
        let (got, got_type): (Value, String) = conn.query_row(
            "SELECT value, typeof(value) FROM kv WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        check(&got == value, &format!("{}: {:?}", key, got));
        check(got_type == *typ, &format!("{}: typeof {}", key, got_type));
    }
    let seven: String = conn.query_row("SELECT value FROM kv WHERE key = 7", [], |r| r.get(0))?;
    check(seven == "seven", "integer key");
    let mut stmt = conn.prepare("SELECT key FROM kv WHERE key GLOB 'v:*' ORDER BY key")?;
    let keys: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    drop(stmt);
    check(keys.join(",") == "v:blob,v:int,v:null,v:real,v:text", &format!("prefix: {:?}", keys));

    let mut conn = conn;
    let tx = conn.transaction()?;
    tx.execute("INSERT INTO kv VALUES ('tx:commit', 1)", [])?;
    tx.commit()?;
    let tx = conn.transaction()?;
    tx.execute("INSERT INTO kv VALUES ('tx:rollback', 1)", [])?;
    tx.rollback()?;
    conn.close().map_err(|(_, e)| e)?;

    let conn = open_db()?;
    let count: i64 = conn.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))?;
    check(count == 7, "count after reopen");
    let committed: i64 = conn.query_row("SELECT value FROM kv WHERE key = 'tx:commit'", [], |r| r.get(0))?;
    check(committed == 1, "committed");
    let rolled_back: Option<i64> = conn
        .query_row("SELECT value FROM kv WHERE key = 'tx:rollback'", [], |r| r.get(0))
        .optional()?;
    check(rolled_back.is_none(), "rolled back");
    let blob: Vec<u8> = conn.query_row("SELECT value FROM kv WHERE key = 'v:blob'", [], |r| r.get(0))?;
    check(blob == vec![0, 0xff, 1], "reopen");

    match conn.execute("INSERT INTO kv VALUES ('v:int', 0)", []) {
        Err(rusqlite::Error::SqliteFailure(e, Some(msg))) => {
            check(e.code == ErrorCode::ConstraintViolation, &format!("code {:?}", e.code));
            check(msg.starts_with("persistmap: key 'v:int' already exists"), &format!("message: {}", msg));
        }
        other => check(false, &format!("duplicate key gave {:?}", other)),
    }
    conn.query_row("SELECT sqlite_version()", [], |r| r.get(0))
}

fn main() {
    match run() {
        Ok(version) => println!("ok sqlite {}", version),
        Err(e) => {
            eprintln!("FAILED: {}", e);
            exit(1);
        }
    }
}
