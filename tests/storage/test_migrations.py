"""The schema files shipped with the package, and how they are split into statements."""

from __future__ import annotations

from hasherd.storage.migrations import migrations, newest_version, split_statements


def test_split_statements_keeps_triggers_whole() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE a (x TEXT DEFAULT 'p;q');
    CREATE TRIGGER t BEFORE DELETE ON a BEGIN SELECT 1; SELECT 2; END;
    """
    got = split_statements(script)
    assert len(got) == 2
    assert got[1].startswith("CREATE TRIGGER") and got[1].endswith("END;")


def test_shipped_schema_files_are_numbered_and_parse() -> None:
    found = migrations()
    assert [m.version for m in found] == list(range(1, newest_version() + 1))
    assert found[0].name == "0001_initial.sql"
    assert all(m.statements for m in found)
    assert not any(s.upper().startswith(("BEGIN", "COMMIT")) for m in found for s in m.statements)
