"""Persistence: schema, the ledger's SQL, the async engine and Alembic migrations."""
