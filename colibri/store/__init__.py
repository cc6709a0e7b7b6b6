"""The SQL store: SQLModel tables, the engine, migrations and repositories (queries only)."""
