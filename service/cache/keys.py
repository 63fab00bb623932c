"""The cache's Redis keys.

Ids are escaped (``_part``); the SKU in braces is a Redis Cluster hash tag, so one SKU's keys
share a slot and one script may touch them all:

- ``inv:v2:stock:{<product>[:<variant>]}:<warehouse>``: one stock row, a hash of
  ``available``, ``reserved``, ``total``, ``version``, ``safety_stock``, ``reorder_point``
  (empty for none), ``backorder_limit``, ``backordered``, ``stock_id`` and ``at`` (commit
  time, epoch seconds).
- ``inv:v2:sku:{<product>[:<variant>]}``: the SKU across warehouses, a hash with one field
  ``w:<warehouse>`` = ``available|reserved|total|version|safety_stock|reorder_point|
  backorder_limit|backordered|stock_id`` per warehouse, the sums ``available``, ``reserved``,
  ``total``, ``version`` (sum of the rows' versions) recomputed by the write script, and
  ``complete`` = ``1`` once a read of PostgreSQL filled it.

``v2`` is the format: a change of what a row holds changes the prefix, so processes of two
versions (a rolling deploy) never read or rewrite each other's entries (docs/cache.md, Keys).
The first format, before stock policies, had no version: ``inv:sku:`` and ``inv:stock:``.
"""

from __future__ import annotations

from service.domain.values import Sku

KEY_PREFIX = "inv:v2:"
SKU_KEY_PREFIX = KEY_PREFIX + "sku:"
STOCK_KEY_PREFIX = KEY_PREFIX + "stock:"


def sku_key(sku: Sku) -> str:
    return SKU_KEY_PREFIX + "{" + _tag(sku) + "}"


def stock_key(sku: Sku, warehouse_id: str) -> str:
    return STOCK_KEY_PREFIX + "{" + _tag(sku) + "}:" + _part(warehouse_id)


def _tag(sku: Sku) -> str:
    product = _part(sku.product_id)
    return product if sku.variant_id is None else f"{product}:{_part(sku.variant_id)}"


def _part(value: str) -> str:
    """Escape the characters that delimit keys and hash tags, so ids can never collide."""
    if "%" in value or ":" in value or "{" in value or "}" in value:
        value = value.replace("%", "%25").replace(":", "%3A")
        value = value.replace("{", "%7B").replace("}", "%7D")
    return value
