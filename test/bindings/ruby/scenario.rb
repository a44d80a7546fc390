# The bindings scenario in Ruby (Debian's ruby-sqlite3).
# Run from a directory holding persistmap.so; prints 'ok sqlite <version>'.
# The lines between the [readme] markers are copied into the README.
require "sqlite3"

def check(cond, what)
  return if cond
  warn "FAILED: #{what}"
  exit 1
end

def open_db
  # [readme]
  require "sqlite3"

  db = SQLite3::Database.new("app.db")
  db.enable_load_extension(true)
  db.load_extension("./persistmap")
  db.enable_load_extension(false)
  # [/readme]
  db
end

values = {
  "v:int" => [42, "integer"], "v:real" => [2.5, "real"], "v:text" => ["h\u00e9llo", "text"],
  "v:blob" => [SQLite3::Blob.new("\x00\xff\x01".b), "blob"], "v:null" => [nil, "null"]
}

db = open_db
db.execute("CREATE VIRTUAL TABLE kv USING persistmap()")
values.each { |key, (value, _)| db.execute("INSERT INTO kv VALUES (?, ?)", [key, value]) }
db.execute("INSERT INTO kv VALUES (?, ?)", [7, "seven"])

values.each do |key, (value, type)|
  got, typ = db.get_first_row("SELECT value, typeof(value) FROM kv WHERE key = ?", [key])
  check(typ == type, "#{key}: typeof #{typ}")
  check(got == value, "#{key}: #{got.inspect}")
end
check(db.get_first_value("SELECT value FROM kv WHERE key = 7") == "seven", "integer key")
keys = db.execute("SELECT key FROM kv WHERE key GLOB 'v:*' ORDER BY key").map(&:first)
check(keys == values.keys.sort, "prefix: #{keys}")

db.transaction { db.execute("INSERT INTO kv VALUES ('tx:commit', 1)") }
begin
  db.transaction do                   # an exception in the block rolls back
    db.execute("INSERT INTO kv VALUES ('tx:rollback', 1)")
    raise IndexError, "roll back"
  end
rescue IndexError
  nil
end
db.close

db = open_db
check(db.get_first_value("SELECT count(*) FROM kv") == 7, "count after reopen")
check(db.get_first_value("SELECT value FROM kv WHERE key = 'tx:commit'") == 1, "committed")
check(db.get_first_value("SELECT value FROM kv WHERE key = 'tx:rollback'").nil?, "rolled back")
check(db.get_first_value("SELECT value FROM kv WHERE key = 'v:blob'") == "\x00\xff\x01".b, "reopen")
begin
  db.execute("INSERT INTO kv VALUES ('v:int', 0)")
  check(false, "no exception for a duplicate key")
rescue SQLite3::ConstraintException => e
  check(e.message.start_with?("persistmap: key 'v:int' already exists"), "message: #{e.message}")
end
version = db.get_first_value("SELECT sqlite_version()")
db.close
puts "ok sqlite #{version}"
