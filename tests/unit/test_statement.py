"""carpet_common.db.Statement: hand-written SQL takes its parameters by name and gives its rows
back by column name, the same on both engines (PostgreSQL prepares it once per connection)."""
import pytest

from carpet_common.db import Statement, open_database

BETWEEN = Statement("""
    SELECT CAST({low} AS INTEGER) AS low, CAST({high} AS INTEGER) AS high,
           CAST({low} AS INTEGER) + CAST({high} AS INTEGER) AS total,
           CASE WHEN CAST({low} AS INTEGER) < CAST({high} AS INTEGER) THEN 'ascending'
                ELSE 'not' END AS order_of""")


@pytest.fixture
def database(engine, tmp_path, pg_databases):
    from tests.conftest import fresh_database_url

    opened = open_database(fresh_database_url(engine, "statement", tmp_path, pg_databases))
    opened.connect()
    yield opened
    opened.close()


def test_parameters_by_name_rows_by_column(database):
    assert BETWEEN.names == ("low", "high", "low", "high", "low", "high")  # each use its own
    row = BETWEEN.row(database, high=5, low=2)
    assert (row.low, row.high, row.total, row.order_of) == (2, 5, 7, "ascending")
    assert tuple(row) == (2, 5, 7, "ascending")  # still a tuple, in the columns' order
    assert BETWEEN.row(database, low=3, high=3).order_of == "not"


def test_a_missing_or_unknown_name_is_refused_before_running():
    with pytest.raises(TypeError) as wrong:
        BETWEEN.values({"low": 1, "hihg": 2})
    assert str(wrong.value) == "statement parameters: missing ['high'], unknown ['hihg']"
