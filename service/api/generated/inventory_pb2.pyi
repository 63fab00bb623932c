import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StockOperation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STOCK_OPERATION_UNSPECIFIED: _ClassVar[StockOperation]
    ADD: _ClassVar[StockOperation]
    SUBTRACT: _ClassVar[StockOperation]
    SET: _ClassVar[StockOperation]

class OrderState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATE_UNSPECIFIED: _ClassVar[OrderState]
    ORDER_STATE_RESERVED: _ClassVar[OrderState]
    ORDER_STATE_REJECTED: _ClassVar[OrderState]
    ORDER_STATE_PAID_EARLY: _ClassVar[OrderState]
    ORDER_STATE_CANCELLED_EARLY: _ClassVar[OrderState]
    ORDER_STATE_EXPIRED: _ClassVar[OrderState]
    ORDER_STATE_COMMITTED: _ClassVar[OrderState]
    ORDER_STATE_RELEASED: _ClassVar[OrderState]
    ORDER_STATE_COMMIT_FAILED: _ClassVar[OrderState]

class ReservationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVATION_STATUS_UNSPECIFIED: _ClassVar[ReservationStatus]
    RESERVATION_STATUS_PENDING: _ClassVar[ReservationStatus]
    RESERVATION_STATUS_COMMITTED: _ClassVar[ReservationStatus]
    RESERVATION_STATUS_RELEASED: _ClassVar[ReservationStatus]
    RESERVATION_STATUS_EXPIRED: _ClassVar[ReservationStatus]
STOCK_OPERATION_UNSPECIFIED: StockOperation
ADD: StockOperation
SUBTRACT: StockOperation
SET: StockOperation
ORDER_STATE_UNSPECIFIED: OrderState
ORDER_STATE_RESERVED: OrderState
ORDER_STATE_REJECTED: OrderState
ORDER_STATE_PAID_EARLY: OrderState
ORDER_STATE_CANCELLED_EARLY: OrderState
ORDER_STATE_EXPIRED: OrderState
ORDER_STATE_COMMITTED: OrderState
ORDER_STATE_RELEASED: OrderState
ORDER_STATE_COMMIT_FAILED: OrderState
RESERVATION_STATUS_UNSPECIFIED: ReservationStatus
RESERVATION_STATUS_PENDING: ReservationStatus
RESERVATION_STATUS_COMMITTED: ReservationStatus
RESERVATION_STATUS_RELEASED: ReservationStatus
RESERVATION_STATUS_EXPIRED: ReservationStatus

class StockItem(_message.Message):
    __slots__ = ("product_id", "variant_id", "quantity", "warehouse_id")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    variant_id: str
    quantity: int
    warehouse_id: str
    def __init__(self, product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., quantity: _Optional[int] = ..., warehouse_id: _Optional[str] = ...) -> None: ...

class ItemAvailability(_message.Message):
    __slots__ = ("product_id", "variant_id", "warehouse_id", "requested_quantity", "available_quantity", "available", "known", "available_by_warehouse")
    class AvailableByWarehouseEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_BY_WAREHOUSE_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    variant_id: str
    warehouse_id: str
    requested_quantity: int
    available_quantity: int
    available: bool
    known: bool
    available_by_warehouse: _containers.ScalarMap[str, int]
    def __init__(self, product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., requested_quantity: _Optional[int] = ..., available_quantity: _Optional[int] = ..., available: _Optional[bool] = ..., known: _Optional[bool] = ..., available_by_warehouse: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("reservation_id", "product_id", "variant_id", "warehouse_id", "quantity", "status", "backordered")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BACKORDERED_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    product_id: str
    variant_id: str
    warehouse_id: str
    quantity: int
    status: ReservationStatus
    backordered: int
    def __init__(self, reservation_id: _Optional[str] = ..., product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., quantity: _Optional[int] = ..., status: _Optional[_Union[ReservationStatus, str]] = ..., backordered: _Optional[int] = ...) -> None: ...

class StockLevel(_message.Message):
    __slots__ = ("stock_id", "product_id", "variant_id", "warehouse_id", "available", "reserved", "total", "version", "sellable", "backordered", "safety_stock", "reorder_point", "backorder_limit")
    STOCK_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SELLABLE_FIELD_NUMBER: _ClassVar[int]
    BACKORDERED_FIELD_NUMBER: _ClassVar[int]
    SAFETY_STOCK_FIELD_NUMBER: _ClassVar[int]
    REORDER_POINT_FIELD_NUMBER: _ClassVar[int]
    BACKORDER_LIMIT_FIELD_NUMBER: _ClassVar[int]
    stock_id: str
    product_id: str
    variant_id: str
    warehouse_id: str
    available: int
    reserved: int
    total: int
    version: int
    sellable: int
    backordered: int
    safety_stock: int
    reorder_point: int
    backorder_limit: int
    def __init__(self, stock_id: _Optional[str] = ..., product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., available: _Optional[int] = ..., reserved: _Optional[int] = ..., total: _Optional[int] = ..., version: _Optional[int] = ..., sellable: _Optional[int] = ..., backordered: _Optional[int] = ..., safety_stock: _Optional[int] = ..., reorder_point: _Optional[int] = ..., backorder_limit: _Optional[int] = ...) -> None: ...

class Shortage(_message.Message):
    __slots__ = ("product_id", "variant_id", "warehouse_id", "requested_quantity", "available_quantity")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    variant_id: str
    warehouse_id: str
    requested_quantity: int
    available_quantity: int
    def __init__(self, product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., requested_quantity: _Optional[int] = ..., available_quantity: _Optional[int] = ...) -> None: ...

class InsufficientStockDetail(_message.Message):
    __slots__ = ("shortages",)
    SHORTAGES_FIELD_NUMBER: _ClassVar[int]
    shortages: _containers.RepeatedCompositeFieldContainer[Shortage]
    def __init__(self, shortages: _Optional[_Iterable[_Union[Shortage, _Mapping]]] = ...) -> None: ...

class CheckStockRequest(_message.Message):
    __slots__ = ("product_id", "variant_id", "quantity", "warehouse_id")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    variant_id: str
    quantity: int
    warehouse_id: str
    def __init__(self, product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., quantity: _Optional[int] = ..., warehouse_id: _Optional[str] = ...) -> None: ...

class CheckStockResponse(_message.Message):
    __slots__ = ("available", "available_quantity", "item")
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    available: bool
    available_quantity: int
    item: ItemAvailability
    def __init__(self, available: _Optional[bool] = ..., available_quantity: _Optional[int] = ..., item: _Optional[_Union[ItemAvailability, _Mapping]] = ...) -> None: ...

class BulkCheckStockRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[StockItem]
    def __init__(self, items: _Optional[_Iterable[_Union[StockItem, _Mapping]]] = ...) -> None: ...

class BulkCheckStockResponse(_message.Message):
    __slots__ = ("all_available", "items")
    ALL_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    all_available: bool
    items: _containers.RepeatedCompositeFieldContainer[ItemAvailability]
    def __init__(self, all_available: _Optional[bool] = ..., items: _Optional[_Iterable[_Union[ItemAvailability, _Mapping]]] = ...) -> None: ...

class ReserveStockRequest(_message.Message):
    __slots__ = ("order_id", "items", "ttl_seconds", "allow_partial")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    items: _containers.RepeatedCompositeFieldContainer[StockItem]
    ttl_seconds: int
    allow_partial: bool
    def __init__(self, order_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[StockItem, _Mapping]]] = ..., ttl_seconds: _Optional[int] = ..., allow_partial: _Optional[bool] = ...) -> None: ...

class ReserveStockResponse(_message.Message):
    __slots__ = ("order_id", "state", "reservations", "expires_at", "duplicate", "lines")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    state: OrderState
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    expires_at: _timestamp_pb2.Timestamp
    duplicate: bool
    lines: _containers.RepeatedCompositeFieldContainer[LineOutcome]
    def __init__(self, order_id: _Optional[str] = ..., state: _Optional[_Union[OrderState, str]] = ..., reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duplicate: _Optional[bool] = ..., lines: _Optional[_Iterable[_Union[LineOutcome, _Mapping]]] = ...) -> None: ...

class LineOutcome(_message.Message):
    __slots__ = ("product_id", "variant_id", "warehouse_id", "requested", "reserved", "short")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    SHORT_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    variant_id: str
    warehouse_id: str
    requested: int
    reserved: int
    short: int
    def __init__(self, product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., requested: _Optional[int] = ..., reserved: _Optional[int] = ..., short: _Optional[int] = ...) -> None: ...

class ReleaseReservationRequest(_message.Message):
    __slots__ = ("order_id", "reason")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    reason: str
    def __init__(self, order_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReleaseReservationResponse(_message.Message):
    __slots__ = ("order_id", "state", "reservations", "duplicate")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    state: OrderState
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    duplicate: bool
    def __init__(self, order_id: _Optional[str] = ..., state: _Optional[_Union[OrderState, str]] = ..., reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class CommitReservationRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class CommitReservationResponse(_message.Message):
    __slots__ = ("order_id", "state", "reservations", "duplicate")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    state: OrderState
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    duplicate: bool
    def __init__(self, order_id: _Optional[str] = ..., state: _Optional[_Union[OrderState, str]] = ..., reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class UpdateStockRequest(_message.Message):
    __slots__ = ("product_id", "variant_id", "quantity", "operation", "reason", "warehouse_id", "expected_version", "idempotency_key")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    variant_id: str
    quantity: int
    operation: StockOperation
    reason: str
    warehouse_id: str
    expected_version: int
    idempotency_key: str
    def __init__(self, product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., quantity: _Optional[int] = ..., operation: _Optional[_Union[StockOperation, str]] = ..., reason: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., expected_version: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class UpdateStockResponse(_message.Message):
    __slots__ = ("stock",)
    STOCK_FIELD_NUMBER: _ClassVar[int]
    stock: StockLevel
    def __init__(self, stock: _Optional[_Union[StockLevel, _Mapping]] = ...) -> None: ...

class GetStockRequest(_message.Message):
    __slots__ = ("product_id", "variant_id", "warehouse_id", "as_of")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    variant_id: str
    warehouse_id: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetStockResponse(_message.Message):
    __slots__ = ("product_id", "variant_id", "warehouses", "available", "reserved", "total", "sellable", "backordered")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SELLABLE_FIELD_NUMBER: _ClassVar[int]
    BACKORDERED_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    variant_id: str
    warehouses: _containers.RepeatedCompositeFieldContainer[StockLevel]
    available: int
    reserved: int
    total: int
    sellable: int
    backordered: int
    def __init__(self, product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., warehouses: _Optional[_Iterable[_Union[StockLevel, _Mapping]]] = ..., available: _Optional[int] = ..., reserved: _Optional[int] = ..., total: _Optional[int] = ..., sellable: _Optional[int] = ..., backordered: _Optional[int] = ...) -> None: ...

class SetStockPolicyRequest(_message.Message):
    __slots__ = ("product_id", "variant_id", "warehouse_id", "safety_stock", "reorder_point", "backorder_limit", "expected_version", "idempotency_key", "reason")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    SAFETY_STOCK_FIELD_NUMBER: _ClassVar[int]
    REORDER_POINT_FIELD_NUMBER: _ClassVar[int]
    BACKORDER_LIMIT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    variant_id: str
    warehouse_id: str
    safety_stock: int
    reorder_point: int
    backorder_limit: int
    expected_version: int
    idempotency_key: str
    reason: str
    def __init__(self, product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., safety_stock: _Optional[int] = ..., reorder_point: _Optional[int] = ..., backorder_limit: _Optional[int] = ..., expected_version: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SetStockPolicyResponse(_message.Message):
    __slots__ = ("stock",)
    STOCK_FIELD_NUMBER: _ClassVar[int]
    stock: StockLevel
    def __init__(self, stock: _Optional[_Union[StockLevel, _Mapping]] = ...) -> None: ...

class ExtendReservationRequest(_message.Message):
    __slots__ = ("order_id", "ttl_seconds")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    ttl_seconds: int
    def __init__(self, order_id: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class ExtendReservationResponse(_message.Message):
    __slots__ = ("order_id", "state", "expires_at", "reservations", "extended")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    state: OrderState
    expires_at: _timestamp_pb2.Timestamp
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    extended: bool
    def __init__(self, order_id: _Optional[str] = ..., state: _Optional[_Union[OrderState, str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., extended: _Optional[bool] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class Transition(_message.Message):
    __slots__ = ("at", "from_state", "to_state", "published", "cause")
    AT_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    from_state: OrderState
    to_state: OrderState
    published: str
    cause: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., from_state: _Optional[_Union[OrderState, str]] = ..., to_state: _Optional[_Union[OrderState, str]] = ..., published: _Optional[str] = ..., cause: _Optional[str] = ...) -> None: ...

class GetOrderResponse(_message.Message):
    __slots__ = ("order_id", "state", "items", "reservations", "expires_at", "allow_partial", "history")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    state: OrderState
    items: _containers.RepeatedCompositeFieldContainer[StockItem]
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    expires_at: _timestamp_pb2.Timestamp
    allow_partial: bool
    history: _containers.RepeatedCompositeFieldContainer[Transition]
    def __init__(self, order_id: _Optional[str] = ..., state: _Optional[_Union[OrderState, str]] = ..., items: _Optional[_Iterable[_Union[StockItem, _Mapping]]] = ..., reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., allow_partial: _Optional[bool] = ..., history: _Optional[_Iterable[_Union[Transition, _Mapping]]] = ...) -> None: ...

class ListStockRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "warehouse_id", "product_id_prefix", "below_reorder_point", "out_of_stock", "backordered")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_PREFIX_FIELD_NUMBER: _ClassVar[int]
    BELOW_REORDER_POINT_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_STOCK_FIELD_NUMBER: _ClassVar[int]
    BACKORDERED_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    warehouse_id: str
    product_id_prefix: str
    below_reorder_point: bool
    out_of_stock: bool
    backordered: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., product_id_prefix: _Optional[str] = ..., below_reorder_point: _Optional[bool] = ..., out_of_stock: _Optional[bool] = ..., backordered: _Optional[bool] = ...) -> None: ...

class ListStockResponse(_message.Message):
    __slots__ = ("stock", "next_page_token")
    STOCK_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    stock: _containers.RepeatedCompositeFieldContainer[StockLevel]
    next_page_token: str
    def __init__(self, stock: _Optional[_Iterable[_Union[StockLevel, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Movement(_message.Message):
    __slots__ = ("id", "stock_id", "product_id", "variant_id", "warehouse_id", "operation", "quantity", "available_after", "reserved_after", "total_after", "reason", "order_id", "actor", "created_at", "transfer_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    STOCK_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_AFTER_FIELD_NUMBER: _ClassVar[int]
    RESERVED_AFTER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_AFTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    stock_id: str
    product_id: str
    variant_id: str
    warehouse_id: str
    operation: str
    quantity: int
    available_after: int
    reserved_after: int
    total_after: int
    reason: str
    order_id: str
    actor: str
    created_at: _timestamp_pb2.Timestamp
    transfer_id: str
    def __init__(self, id: _Optional[int] = ..., stock_id: _Optional[str] = ..., product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., operation: _Optional[str] = ..., quantity: _Optional[int] = ..., available_after: _Optional[int] = ..., reserved_after: _Optional[int] = ..., total_after: _Optional[int] = ..., reason: _Optional[str] = ..., order_id: _Optional[str] = ..., actor: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., transfer_id: _Optional[str] = ...) -> None: ...

class ListMovementsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "product_id", "variant_id", "warehouse_id", "order_id", "operation", "since", "until", "newest_first")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    product_id: str
    variant_id: str
    warehouse_id: str
    order_id: str
    operation: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    newest_first: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., warehouse_id: _Optional[str] = ..., order_id: _Optional[str] = ..., operation: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., newest_first: _Optional[bool] = ...) -> None: ...

class ListMovementsResponse(_message.Message):
    __slots__ = ("movements", "next_page_token")
    MOVEMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    movements: _containers.RepeatedCompositeFieldContainer[Movement]
    next_page_token: str
    def __init__(self, movements: _Optional[_Iterable[_Union[Movement, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Warehouse(_message.Message):
    __slots__ = ("warehouse_id", "name", "priority", "active")
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    name: str
    priority: int
    active: bool
    def __init__(self, warehouse_id: _Optional[str] = ..., name: _Optional[str] = ..., priority: _Optional[int] = ..., active: _Optional[bool] = ...) -> None: ...

class ListWarehousesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWarehousesResponse(_message.Message):
    __slots__ = ("warehouses",)
    WAREHOUSES_FIELD_NUMBER: _ClassVar[int]
    warehouses: _containers.RepeatedCompositeFieldContainer[Warehouse]
    def __init__(self, warehouses: _Optional[_Iterable[_Union[Warehouse, _Mapping]]] = ...) -> None: ...

class UpsertWarehouseRequest(_message.Message):
    __slots__ = ("warehouse_id", "name", "priority", "active")
    WAREHOUSE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    warehouse_id: str
    name: str
    priority: int
    active: bool
    def __init__(self, warehouse_id: _Optional[str] = ..., name: _Optional[str] = ..., priority: _Optional[int] = ..., active: _Optional[bool] = ...) -> None: ...

class UpsertWarehouseResponse(_message.Message):
    __slots__ = ("warehouse",)
    WAREHOUSE_FIELD_NUMBER: _ClassVar[int]
    warehouse: Warehouse
    def __init__(self, warehouse: _Optional[_Union[Warehouse, _Mapping]] = ...) -> None: ...

class TransferStockRequest(_message.Message):
    __slots__ = ("product_id", "variant_id", "from_warehouse", "to_warehouse", "quantity", "reason", "idempotency_key")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_WAREHOUSE_FIELD_NUMBER: _ClassVar[int]
    TO_WAREHOUSE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    variant_id: str
    from_warehouse: str
    to_warehouse: str
    quantity: int
    reason: str
    idempotency_key: str
    def __init__(self, product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., from_warehouse: _Optional[str] = ..., to_warehouse: _Optional[str] = ..., quantity: _Optional[int] = ..., reason: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class TransferStockResponse(_message.Message):
    __slots__ = ("transfer_id", "source", "destination", "duplicate")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    source: StockLevel
    destination: StockLevel
    duplicate: bool
    def __init__(self, transfer_id: _Optional[str] = ..., source: _Optional[_Union[StockLevel, _Mapping]] = ..., destination: _Optional[_Union[StockLevel, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class ReturnStockRequest(_message.Message):
    __slots__ = ("order_id", "items", "restock", "reason", "event_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RESTOCK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    items: _containers.RepeatedCompositeFieldContainer[StockItem]
    restock: bool
    reason: str
    event_id: str
    def __init__(self, order_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[StockItem, _Mapping]]] = ..., restock: _Optional[bool] = ..., reason: _Optional[str] = ..., event_id: _Optional[str] = ...) -> None: ...

class ReturnStockResponse(_message.Message):
    __slots__ = ("order_id", "state", "returned", "duplicate")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RETURNED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    state: OrderState
    returned: _containers.RepeatedCompositeFieldContainer[Reservation]
    duplicate: bool
    def __init__(self, order_id: _Optional[str] = ..., state: _Optional[_Union[OrderState, str]] = ..., returned: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class BulkUpdateStockRequest(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[UpdateStockRequest]
    def __init__(self, lines: _Optional[_Iterable[_Union[UpdateStockRequest, _Mapping]]] = ...) -> None: ...

class BulkUpdateStockResult(_message.Message):
    __slots__ = ("code", "message", "stock", "duplicate")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STOCK_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    stock: StockLevel
    duplicate: bool
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., stock: _Optional[_Union[StockLevel, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class BulkUpdateStockResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BulkUpdateStockResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BulkUpdateStockResult, _Mapping]]] = ...) -> None: ...
