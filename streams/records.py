"""The DLQ record of the order topics, and the decoders of raw order events.

Order events arrive as raw bytes (the agents use the ``raw`` serializer) so that a malformed
event can be sent to the DLQ byte for byte, and so that every rejection names the field it
failed on. The contracts are the JSON Schemas in ``docs/events/``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import faust

from service.domain import operations_validation, validation
from service.domain.commands import (
    Commit,
    Extend,
    OrderCommand,
    OrderEventKind,
    Release,
    Reserve,
    Source,
)
from service.domain.errors import InvalidArgument
from service.domain.validation import Limits

if TYPE_CHECKING:
    from service.config import Settings

# A dead letter must fit in one Kafka message (producers and brokers refuse about 1 MB and
# more by default): it carries at most this much of the original key and value, and says so.
# The whole original stays in the source topic at (source_topic, partition, offset).
DLQ_MAX_KEY_BYTES = 4 * 1024
DLQ_MAX_VALUE_BYTES = 256 * 1024


class DeadLetter(faust.Record, serializer="json", include_metadata=False):
    """An order event the worker could not use, with everything needed to replay it."""

    source_topic: str
    partition: int
    offset: int
    key: str | None
    key_base64: str | None
    value_base64: str | None
    error: str  # low-cardinality category: empty, too_large, json, invalid, rejected, internal
    reason: str  # what exactly was wrong, naming the field
    event_id: str | None
    failed_at: str
    value_size: int | None = None  # bytes of the original value
    truncated: bool = False  # key or value cut to DLQ_MAX_*_BYTES (the original: source_topic)


class InvalidEvent(Exception):
    """An order event that can never be processed: it goes to the DLQ, once."""

    def __init__(self, error: str, reason: str, event_id: str | None = None) -> None:
        super().__init__(f"{error}: {reason}")
        self.error = error
        self.reason = reason
        self.event_id = event_id


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    error: str,
    reason: str,
    event_id: str | None = None,
) -> DeadLetter:
    size = None if value is None else len(value)
    truncated = (key is not None and len(key) > DLQ_MAX_KEY_BYTES) or (
        value is not None and len(value) > DLQ_MAX_VALUE_BYTES
    )
    if key is not None:
        key = key[:DLQ_MAX_KEY_BYTES]
    if value is not None:
        value = value[:DLQ_MAX_VALUE_BYTES]
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=None if key is None else key.decode("utf-8", errors="replace"),
        key_base64=_b64(key),
        value_base64=_b64(value),
        error=error,
        reason=reason,
        event_id=event_id,
        failed_at=now_iso(),
        value_size=size,
        truncated=truncated,
    )


def _load_object(raw: bytes | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        raise InvalidEvent("empty", "the message has no value")
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidEvent("json", f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise InvalidEvent("json", f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise InvalidEvent("json", "not valid JSON: nested too deeply") from None
    except ValueError as exc:
        # json.loads raises a plain ValueError for an integer of more than 4,300 digits
        # (sys.get_int_max_str_digits); escaping, it would halt the order agents
        raise InvalidEvent("json", f"not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise InvalidEvent("invalid", f"must be a JSON object, got {type(body).__name__}")
    return body


def _occurred_at(value: Any) -> None:
    """Required by the contract; the engine keys on order state, so it is checked, not used."""
    if not isinstance(value, str):
        raise InvalidArgument("occurred_at", "must be an ISO 8601 date-time string")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument("occurred_at", "must be an ISO 8601 date-time string") from None


def _command(
    kind: OrderEventKind, body: dict[str, Any], event_id: str, limits: Limits
) -> OrderCommand:
    # the same checks as the RPCs (ReserveStock, ExtendReservation): one contract for both
    if kind is OrderEventKind.CREATED:
        return validation.reserve(
            body.get("order_id"),
            body.get("items"),
            body.get("ttl_seconds"),
            limits,
            source=Source.STREAM,
            event_id=event_id,
            allow_partial=body.get("allow_partial"),
        )
    if kind is OrderEventKind.PAID:
        return validation.commit(
            body.get("order_id"), limits, source=Source.STREAM, event_id=event_id
        )
    if kind is OrderEventKind.CANCELLED:
        return validation.release(
            body.get("order_id"),
            body.get("reason"),
            limits,
            source=Source.STREAM,
            event_id=event_id,
        )
    if kind is OrderEventKind.RETURNED:
        return operations_validation.return_stock(
            body.get("order_id"),
            body.get("items"),
            body.get("restock"),
            body.get("reason"),
            limits,
            source=Source.STREAM,
            event_id=event_id,
        )
    if kind is OrderEventKind.EXTENDED:
        return validation.extend(
            body.get("order_id"),
            body.get("ttl_seconds"),
            limits,
            source=Source.STREAM,
            event_id=event_id,
        )
    raise ValueError(f"{kind} is not an order topic")


def decode_order_event(kind: OrderEventKind, raw: bytes | None, limits: Limits) -> OrderCommand:
    """Turn the bytes of an order event into its command, or raise ``InvalidEvent``."""
    if raw is not None and len(raw) > limits.max_message_bytes:
        raise InvalidEvent(
            "too_large", f"{len(raw)} bytes, over the limit of {limits.max_message_bytes}"
        )
    body = _load_object(raw)
    event_id: str | None = None
    try:
        event_id = validation.require_id(body.get("event_id"), "event_id", limits)
        _occurred_at(body.get("occurred_at"))
        return _command(kind, body, event_id, limits)
    except InvalidArgument as exc:
        raise InvalidEvent("invalid", exc.message, event_id) from None


@dataclass(frozen=True, slots=True)
class TopicKinds:
    """Which order topic carries which kind of event (names come from Settings)."""

    created: str
    paid: str
    cancelled: str
    extended: str
    returned: str

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicKinds:
        return cls(
            created=settings.topic_order_created,
            paid=settings.topic_order_paid,
            cancelled=settings.topic_order_cancelled,
            extended=settings.topic_order_extended,
            returned=settings.topic_order_returned,
        )

    def kind_of(self, topic: str) -> OrderEventKind:
        for kind, name in self.pairs():
            if name == topic:
                return kind
        raise KeyError(topic)

    def pairs(self) -> tuple[tuple[OrderEventKind, str], ...]:
        """Each order topic's kind and name, in the order of ``Settings.order_topics``."""
        return (
            (OrderEventKind.CREATED, self.created),
            (OrderEventKind.PAID, self.paid),
            (OrderEventKind.CANCELLED, self.cancelled),
            (OrderEventKind.EXTENDED, self.extended),
            (OrderEventKind.RETURNED, self.returned),
        )


# The logical names of the order topics, for metric labels that must not grow with renames.
KIND_LABELS: dict[OrderEventKind, str] = {
    OrderEventKind.CREATED: "order-created",
    OrderEventKind.PAID: "order-paid",
    OrderEventKind.CANCELLED: "order-cancelled",
    OrderEventKind.EXTENDED: "order-extended",
    OrderEventKind.RETURNED: "order-returned",
}

__all__ = [
    "KIND_LABELS",
    "Commit",
    "DeadLetter",
    "Extend",
    "InvalidEvent",
    "Release",
    "Reserve",
    "TopicKinds",
    "dead_letter",
    "decode_order_event",
    "now_iso",
]
