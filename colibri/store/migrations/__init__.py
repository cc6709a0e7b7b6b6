"""Alembic migrations.  ``HEAD`` must name the newest revision (a test checks it)."""

HEAD = "0001"
