# The bindings scenario in Perl (Debian's libdbd-sqlite3-perl, DBD::SQLite).
# Run from a directory holding persistmap.so; prints 'ok sqlite <version>'.
# The lines between the [readme] markers are copied into the README.
use strict;
use warnings;
use utf8;
use DBI qw(:sql_types);

sub check {
    my ($cond, $what) = @_;
    unless ($cond) { print STDERR "FAILED: $what\n"; exit 1; }
}

sub open_db {
    # [readme]
    use DBI;

    my $dbh = DBI->connect("dbi:SQLite:dbname=app.db", "", "",
                           { RaiseError => 1, PrintError => 0, AutoCommit => 1,
                             sqlite_unicode => 1 });
    $dbh->sqlite_enable_load_extension(1);
    $dbh->sqlite_load_extension("./persistmap");
    $dbh->sqlite_enable_load_extension(0);
    # [/readme]
    return $dbh;
}

my $dbh = open_db();
$dbh->do("CREATE VIRTUAL TABLE kv USING persistmap()");
sub insert {                      # a fresh statement each time: bind types stick
    my ($key, $ktype, $value, $vtype) = @_;
    my $sth = $dbh->prepare("INSERT INTO kv VALUES (?, ?)");
    $sth->bind_param(1, $key, $ktype);
    $sth->bind_param(2, $value, $vtype);
    $sth->execute;
}
insert("v:int", SQL_VARCHAR, 42, SQL_INTEGER);
insert("v:real", SQL_VARCHAR, 2.5, SQL_DOUBLE);
insert("v:text", SQL_VARCHAR, "héllo", SQL_VARCHAR);
insert("v:blob", SQL_VARCHAR, "\x00\xff\x01", SQL_BLOB);
insert("v:null", SQL_VARCHAR, undef, SQL_VARCHAR);
insert(7, SQL_INTEGER, "seven", SQL_VARCHAR);

my %want = ("v:int" => [42, "integer"], "v:real" => [2.5, "real"], "v:text" => ["héllo", "text"],
            "v:blob" => ["\x00\xff\x01", "blob"]);
for my $key (sort keys %want) {
    my ($value, $type) = $dbh->selectrow_array(
        "SELECT value, typeof(value) FROM kv WHERE key = ?", undef, $key);
    check($type eq $want{$key}[1], "$key: typeof $type");
    check($value eq $want{$key}[0], "$key: $value");
}
my ($null, $ntype) = $dbh->selectrow_array("SELECT value, typeof(value) FROM kv WHERE key = 'v:null'");
check(!defined $null && $ntype eq "null", "v:null");
check($dbh->selectrow_array("SELECT value FROM kv WHERE key = 7") eq "seven", "integer key");
my $keys = join ",", @{ $dbh->selectcol_arrayref("SELECT key FROM kv WHERE key GLOB 'v:*' ORDER BY key") };
check($keys eq "v:blob,v:int,v:null,v:real,v:text", "prefix: $keys");

$dbh->begin_work;
$dbh->do("INSERT INTO kv VALUES ('tx:commit', 1)");
$dbh->commit;
$dbh->begin_work;
$dbh->do("INSERT INTO kv VALUES ('tx:rollback', 1)");
$dbh->rollback;
$dbh->disconnect;

$dbh = open_db();
check($dbh->selectrow_array("SELECT count(*) FROM kv") == 7, "count after reopen");
check($dbh->selectrow_array("SELECT value FROM kv WHERE key = 'tx:commit'") == 1, "committed");
check(!defined $dbh->selectrow_array("SELECT value FROM kv WHERE key = 'tx:rollback'"), "rolled back");
check($dbh->selectrow_array("SELECT value FROM kv WHERE key = 'v:blob'") eq "\x00\xff\x01", "reopen");

eval { $dbh->do("INSERT INTO kv VALUES ('v:int', 0)"); 1 }
    and check(0, "no error for a duplicate key");
check($@ =~ /persistmap: key 'v:int' already exists/, "message: $@");
check($dbh->err == 19, "error code " . ($dbh->err // "none"));
my $version = $dbh->selectrow_array("SELECT sqlite_version()");
$dbh->disconnect;
print "ok sqlite $version\n";
