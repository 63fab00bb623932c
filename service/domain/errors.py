"""The errors of the domain. Each names the gRPC status it maps to (once, in the interceptor)."""

from __future__ import annotations

from collections.abc import Sequence

from service.domain.values import Shortage


class InventoryError(Exception):
    """Base of every error the service reports to a caller."""

    status = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(InventoryError):
    status = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message

    def within(self, parent: str) -> InvalidArgument:
        """The same error, its field named as a member of ``parent`` (``items[3].quantity``)."""
        return InvalidArgument(f"{parent}.{self.field}", self.reason)


class NotFound(InventoryError):
    status = "NOT_FOUND"


class FailedPrecondition(InventoryError):
    status = "FAILED_PRECONDITION"


class InsufficientStock(FailedPrecondition):
    def __init__(self, shortages: Sequence[Shortage]) -> None:
        self.shortages = tuple(shortages)
        described = ", ".join(
            f"{s.sku.key} requested {s.requested} available {s.available}" for s in self.shortages
        )
        super().__init__(f"insufficient stock: {described}")


class NegativeStock(FailedPrecondition):
    pass


class WrongState(FailedPrecondition):
    pass


class VersionMismatch(FailedPrecondition):
    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"version mismatch: expected {expected}, stock is at {actual}")
        self.expected = expected
        self.actual = actual


class AlreadyExists(InventoryError):
    status = "ALREADY_EXISTS"


class Unavailable(InventoryError):
    """A dependency (the database) is down; the call may be retried and changed nothing."""

    status = "UNAVAILABLE"
