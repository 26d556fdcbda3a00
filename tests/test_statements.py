"""The hot path's SQL (quaero.statements): named parameters rendered for each driver.

The statements themselves run on both stores in tests/test_jobs.py and
tests/test_recovery.py (BACKENDS); these check the rendering they rely on."""

from quaero import statements


def test_sqlite_takes_named_parameters_as_written():
    assert statements.render(statements.CLAIM, "sqlite") == statements.CLAIM


def test_postgresql_gets_pyformat_placeholders_and_keeps_casts():
    sql = "UPDATE jobs SET a = :now, b = :now::text WHERE id = :id AND t = '12:30'"
    assert statements.render(sql, "postgresql") == (
        "UPDATE jobs SET a = %(now)s, b = %(now)s::text WHERE id = %(id)s AND t = '12:30'"
    )


def test_every_hot_statement_is_portable():
    for sql in (statements.CLAIM, statements.FINISH, statements.STILL_HELD, statements.SETTLE):
        rendered = statements.render(sql, "postgresql")
        assert ":" not in rendered.replace("::", "") and "%" not in sql


def test_a_child_insert_has_one_placeholder_per_column_and_row():
    sql = statements.insert_children(3, "?")
    assert sql.count("?") == 3 * len(statements.CHILD_COLUMNS)
    assert sql.endswith("ON CONFLICT DO NOTHING RETURNING id, priority, type")
