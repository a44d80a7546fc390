// The bindings scenario in Node.js with better-sqlite3 (its own SQLite).
// Run from a directory holding persistmap.so; prints "ok sqlite <version>".
// The lines between the [readme] markers are copied into the README.
'use strict';
const assert = require('node:assert/strict');

function openDb() {
  // [readme]
  const Database = require('better-sqlite3');

  const db = new Database('app.db');
  db.loadExtension('./persistmap');
  // [/readme]
  return db;
}

const values = [
  ['v:int', 42n, 'integer'],             // a BigInt binds as INTEGER, a Number as REAL
  ['v:real', 2.5, 'real'],
  ['v:text', 'h\u00e9llo', 'text'],
  ['v:blob', Buffer.from([0, 0xff, 1]), 'blob'],
  ['v:null', null, 'null'],
];

let db = openDb();
db.exec('CREATE VIRTUAL TABLE kv USING persistmap()');
const insert = db.prepare('INSERT INTO kv VALUES (?, ?)');
for (const [key, value] of values) insert.run(key, value);
insert.run(7n, 'seven');

const byKey = db.prepare('SELECT value, typeof(value) AS type FROM kv WHERE key = ?').safeIntegers();
for (const [key, value, type] of values) {
  const row = byKey.get(key);
  assert.equal(row.type, type, key);
  assert.deepEqual(row.value, value, key);
}
assert.equal(db.prepare('SELECT value FROM kv WHERE key = 7').pluck().get(), 'seven');
const keys = db.prepare("SELECT key FROM kv WHERE key GLOB 'v:*' ORDER BY key").pluck().all();
assert.deepEqual(keys, ['v:blob', 'v:int', 'v:null', 'v:real', 'v:text']);

db.transaction(() => {
  db.prepare("INSERT INTO kv VALUES ('tx:commit', 1)").run();
})();
assert.throws(() => db.transaction(() => {       // a throw inside rolls back
  db.prepare("INSERT INTO kv VALUES ('tx:rollback', 1)").run();
  throw new RangeError('roll back');
})(), RangeError);
db.close();

db = openDb();
assert.equal(db.prepare('SELECT count(*) FROM kv').pluck().get(), 7);
assert.equal(db.prepare("SELECT value FROM kv WHERE key = 'tx:commit'").pluck().get(), 1);
assert.equal(db.prepare("SELECT value FROM kv WHERE key = 'tx:rollback'").pluck().get(), undefined);
assert.deepEqual(db.prepare("SELECT value FROM kv WHERE key = 'v:blob'").pluck().get(),
                 Buffer.from([0, 0xff, 1]));
assert.throws(() => db.prepare("INSERT INTO kv VALUES ('v:int', 0)").run(), (e) => {
  assert.ok(e instanceof require('better-sqlite3').SqliteError, `not a SqliteError: ${e}`);
  assert.match(e.code, /^SQLITE_CONSTRAINT/);
  assert.match(e.message, /^persistmap: key 'v:int' already exists/);
  return true;
});
const version = db.prepare('SELECT sqlite_version()').pluck().get();
db.close();
console.log(`ok sqlite ${version}`);
