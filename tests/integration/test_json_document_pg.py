"""PostgreSQL reads a plan's document encoded by msgspec as it read the standard library's."""

import json

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from db.ledger import json_document
from tests.unit.test_json_document import STDLIB, planned_document

pytestmark = pytest.mark.stack


async def test_postgresql_reads_the_same_document(settings):
    document = planned_document()
    db = create_async_engine(settings.database_url)
    try:
        async with db.connect() as conn:
            same, expires, product = (
                await conn.execute(
                    text(
                        "SELECT CAST(:a AS json)::jsonb = CAST(:b AS json)::jsonb, "
                        "(CAST(:a AS json)->'reservations'->0->>8)::timestamptz "
                        "= (CAST(:b AS json)->'reservations'->0->>8)::timestamptz, "
                        "CAST(:a AS json)->'reservations'->0->>3"
                    ),
                    {"a": json_document(document), "b": STDLIB.encode(document)},
                )
            ).one()
    finally:
        await db.dispose()
    assert same and expires
    assert product == "caf\u00e9"
    assert json.loads(json_document(document))["reservations"][0][3] == product
