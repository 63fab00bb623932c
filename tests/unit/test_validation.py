import pytest

from service.domain import validation as v
from service.domain.errors import InvalidArgument
from service.domain.values import Item, Sku

LIMITS = v.Limits(max_items_per_order=3, max_quantity_per_item=10, max_id_length=8)


def item(quantity=1, product="p", **extra):
    return {"product_id": product, "quantity": quantity, **extra}


@pytest.mark.parametrize(
    ("order_id", "items", "ttl", "field"),
    [
        ("", [item()], None, "order_id"),
        ("   ", [item()], None, "order_id"),
        (7, [item()], None, "order_id"),
        ("o" * 9, [item()], None, "order_id"),
        ("o\x00", [item()], None, "order_id"),
        ("o", [], None, "items"),
        ("o", "nope", None, "items"),
        ("o", [item()] * 4, None, "items"),
        ("o", [item(0)], None, "items[0].quantity"),
        ("o", [item(-1)], None, "items[0].quantity"),
        ("o", [item(11)], None, "items[0].quantity"),
        ("o", [item(1.5)], None, "items[0].quantity"),
        ("o", [item(True)], None, "items[0].quantity"),
        ("o", [item("2")], None, "items[0].quantity"),
        ("o", [item(product="")], None, "items[0].product_id"),
        ("o", [item(), {"quantity": 1}], None, "items[1].product_id"),
        ("o", [item(6), item(5)], None, "items"),
        ("o", ["x"], None, "items[0]"),
        ("o", [item()], -5, "ttl_seconds"),
        ("o", [item()], 10**9, "ttl_seconds"),
        ("o", [item()], "60", "ttl_seconds"),
    ],
)
def test_reserve_is_refused_with_the_field_named(order_id, items, ttl, field):
    with pytest.raises(InvalidArgument) as refused:
        v.reserve(order_id, items, ttl, LIMITS)
    assert refused.value.field == field


def test_repeated_skus_are_summed_and_empty_variant_means_none():
    command = v.reserve(
        "o", [item(2), item(3, variant_id=""), item(1, product="q", warehouse_id="w")], 60, LIMITS
    )
    assert command.items == (Item(Sku("p"), 5), Item(Sku("q"), 1, "w"))
    assert command.ttl_seconds == 60


def test_ttl_defaults_when_absent():
    assert v.reserve("o", [item()], None, LIMITS).ttl_seconds == LIMITS.default_ttl_seconds


@pytest.mark.parametrize(
    ("operation", "quantity", "field"),
    [("MULTIPLY", 1, "operation"), ("ADD", 0, "quantity"), ("SET", -1, "quantity")],
)
def test_update_stock_refusals(operation, quantity, field):
    with pytest.raises(InvalidArgument) as refused:
        v.update_stock(
            product_id="p",
            variant_id=None,
            warehouse_id=None,
            operation=operation,
            quantity=quantity,
            reason="r",
            limits=LIMITS,
            default_warehouse_id="default",
        )
    assert refused.value.field == field


def test_update_stock_without_warehouse_goes_to_the_default():
    command = v.update_stock(
        product_id="p",
        variant_id="",
        warehouse_id="",
        operation="SET",
        quantity=0,
        reason=None,
        limits=LIMITS,
        default_warehouse_id="default",
    )
    assert (command.warehouse_id, command.sku) == ("default", Sku("p"))


@pytest.mark.parametrize(
    ("reason", "accepted"),
    [
        ("restock\nfrom supplier\t#4", True),
        ("réassort ✓", True),
        ("\x00", False),  # PostgreSQL text cannot hold NUL
        ("before\x00after", False),
        ("\ud800", False),  # a lone surrogate, as a JSON string may carry one
    ],
)
def test_free_text_that_postgresql_cannot_store_is_refused(reason, accepted):
    def update():
        return v.update_stock(
            product_id="p",
            variant_id=None,
            warehouse_id=None,
            operation="ADD",
            quantity=1,
            reason=reason,
            limits=LIMITS,
            default_warehouse_id="default",
        )

    if accepted:
        assert update().reason == reason
    else:
        with pytest.raises(InvalidArgument) as refused:
            update()
        assert refused.value.field == "reason"
