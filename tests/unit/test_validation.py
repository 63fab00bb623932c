import pytest

from service.domain import validation as v
from service.domain.commands import SetStockPolicy
from service.domain.errors import InvalidArgument
from service.domain.values import Item, Sku, StockPolicy

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


# -- set_stock_policy --


def set_policy(**given):
    fields = {"product_id": "p", "variant_id": None, "warehouse_id": None, **given}
    return v.set_stock_policy(**fields, limits=LIMITS, default_warehouse_id="default")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param({}, SetStockPolicy(Sku("p"), "default", StockPolicy()), id="defaults"),
        pytest.param(
            {"safety_stock": None, "reorder_point": None, "backorder_limit": None},
            SetStockPolicy(Sku("p"), "default", StockPolicy()),
            id="None is not given",
        ),
        pytest.param(
            {
                "variant_id": "v",
                "warehouse_id": "east",
                "safety_stock": 10,  # LIMITS.max_quantity_per_item: allowed
                "reorder_point": 0,
                "backorder_limit": 2**53,
                "reason": "peak season",
                "expected_version": 0,
                "idempotency_key": "k-1",
                "actor": "token:abc",
            },
            SetStockPolicy(
                Sku("p", "v"),
                "east",
                StockPolicy(safety_stock=10, reorder_point=0, backorder_limit=2**53),
                reason="peak season",
                actor="token:abc",
                expected_version=0,
                idempotency_key="k-1",
            ),
            id="every field, at its bounds",
        ),
        pytest.param(
            {"variant_id": "", "warehouse_id": "", "reason": "", "idempotency_key": ""},
            SetStockPolicy(Sku("p"), "default", StockPolicy()),
            id="empty strings are not given",
        ),
        pytest.param(
            {"safety_stock": 7, "backorder_limit": 3},
            SetStockPolicy(Sku("p"), "default", StockPolicy(7, None, 3)),
            id="a safety stock with backorders",
        ),
    ],
)
def test_set_stock_policy_builds_the_command(given, expected):
    assert set_policy(**given) == expected


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"safety_stock": -1}, "safety_stock"),
        ({"safety_stock": 11}, "safety_stock"),  # over LIMITS.max_quantity_per_item
        ({"safety_stock": 1.0}, "safety_stock"),
        ({"safety_stock": True}, "safety_stock"),
        ({"safety_stock": "1"}, "safety_stock"),
        ({"reorder_point": -1}, "reorder_point"),
        ({"reorder_point": 2**53 + 1}, "reorder_point"),
        ({"reorder_point": False}, "reorder_point"),
        ({"backorder_limit": -1}, "backorder_limit"),
        ({"backorder_limit": 2**53 + 1}, "backorder_limit"),
        ({"backorder_limit": 0.5}, "backorder_limit"),
        ({"product_id": ""}, "product_id"),
        ({"product_id": None}, "product_id"),
        ({"product_id": "p" * 9}, "product_id"),
        ({"variant_id": "v\n"}, "variant_id"),
        ({"warehouse_id": 7}, "warehouse_id"),
        ({"warehouse_id": "w" * 9}, "warehouse_id"),
        ({"expected_version": -1}, "expected_version"),
        ({"expected_version": "4"}, "expected_version"),
        ({"idempotency_key": "k" * 9}, "idempotency_key"),
        ({"reason": "a\x00b"}, "reason"),
        ({"reason": "r" * 513}, "reason"),
    ],
)
def test_set_stock_policy_is_refused_with_the_field_named(given, field):
    with pytest.raises(InvalidArgument) as refused:
        set_policy(**given)
    assert refused.value.field == field
    assert refused.value.message.startswith(f"{field}:")


def test_set_stock_policy_leaves_what_the_row_decides_to_the_engine():
    # a backorder limit below what the row has backordered is FailedPrecondition there; here
    # any non-negative limit is valid input, 0 included
    assert set_policy(backorder_limit=0).policy == StockPolicy()


def test_set_stock_policy_and_update_stock_read_the_version_alike():
    common = {"product_id": "p", "variant_id": None, "warehouse_id": None, "reason": None}
    update = v.update_stock(
        **common,
        operation="ADD",
        quantity=1,
        limits=LIMITS,
        default_warehouse_id="default",
        expected_version=2**62,
    )
    assert set_policy(expected_version=2**62).expected_version == update.expected_version
    for refused in (2**62 + 1, -1):
        with pytest.raises(InvalidArgument):
            set_policy(expected_version=refused)
