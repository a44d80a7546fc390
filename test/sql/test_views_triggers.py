"""Views and triggers over persistmap tables."""
import pytest

from conftest import connect, error_of, errname


@pytest.fixture
def shop(tmp):
    con = connect(str(tmp / "shop.db"))
    con.executescript("""
        CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT, qty INTEGER);
        CREATE VIRTUAL TABLE jobs USING persistmap();
        CREATE TRIGGER enqueue AFTER INSERT ON orders BEGIN
          INSERT INTO jobs(value) VALUES (json_object('order', new.id, 'item', new.item));
        END;
        CREATE VIEW pending AS
          SELECT key AS job, json_extract(value, '$.order') AS order_id,
                 json_extract(value, '$.item') AS item
          FROM jobs ORDER BY seq;
    """)
    yield con
    con.close()


def test_a_trigger_enqueues_into_a_persistmap_queue(shop, tmp):
    shop.execute("INSERT INTO orders(item, qty) VALUES ('tea', 1)")
    shop.execute("INSERT INTO orders(item, qty) VALUES ('jam', 2), ('bread', 1)")
    assert shop.execute("SELECT job, order_id, item FROM pending").fetchall() == [
        (1, 1, "tea"), (2, 2, "jam"), (3, 3, "bread")]
    # A worker on another connection pops the oldest job.
    worker = connect(str(tmp / "shop.db"))
    job, = worker.execute("SELECT job FROM pending LIMIT 1").fetchone()
    worker.execute("DELETE FROM jobs WHERE key = ?", (job,))
    assert worker.execute("SELECT changes()").fetchone() == (1,)
    worker.execute("DELETE FROM jobs WHERE key = ?", (job,))          # already taken
    assert worker.execute("SELECT changes()").fetchone() == (0,)
    assert [r[0] for r in shop.execute("SELECT item FROM pending")] == ["jam", "bread"]
    worker.close()


def test_the_order_and_its_job_commit_or_roll_back_together(shop):
    shop.execute("BEGIN")
    shop.execute("INSERT INTO orders(item, qty) VALUES ('tea', 1)")
    shop.execute("ROLLBACK")
    assert shop.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    assert shop.execute("SELECT count(*) FROM orders").fetchone() == (0,)


def test_a_failing_trigger_undoes_the_whole_statement(shop):
    """(SQLite allows no trigger on a virtual table itself.) The second row
    of the INSERT fails after the first row's job was queued: the statement
    is undone, the job with it."""
    shop.execute("CREATE TRIGGER too_many AFTER INSERT ON orders WHEN new.qty > 100 "
                 "BEGIN SELECT RAISE(ABORT, 'too many'); END")
    e = error_of(shop, "INSERT INTO orders(item, qty) VALUES ('tea', 1), ('jam', 1000)")
    assert str(e) == "too many" and errname(e) == "SQLITE_CONSTRAINT"
    assert shop.execute("SELECT count(*) FROM orders").fetchone() == (0,)
    assert shop.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    shop.execute("INSERT INTO orders(item, qty) VALUES ('tea', 1)")
    assert shop.execute("SELECT count(*) FROM jobs").fetchone() == (1,)


def test_views_with_joins_and_a_trigger_on_a_view(shop):
    shop.executescript("""
        INSERT INTO orders(item, qty) VALUES ('tea', 1), ('jam', 2);
        CREATE VIEW order_jobs AS
          SELECT o.item, j.key AS job FROM orders o JOIN jobs j
          ON j.key = o.id;
        CREATE VIEW kv_view AS SELECT key, value FROM jobs;
        CREATE TRIGGER kv_view_insert INSTEAD OF INSERT ON kv_view BEGIN
          INSERT INTO jobs VALUES (new.key, new.value);
        END;
    """)
    assert shop.execute("SELECT item, job FROM order_jobs ORDER BY job").fetchall() == [
        ("tea", 1), ("jam", 2)]
    shop.execute("INSERT INTO kv_view VALUES ('manual', 'x')")
    assert shop.execute("SELECT value FROM jobs WHERE key = 'manual'").fetchone() == ("x",)
