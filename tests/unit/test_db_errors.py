"""``db_errors.classify``: which database failures retry the batch, report the database
unavailable, or are a bug."""

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from service.db_errors import Failure, chain, classify


def wrapped(error: BaseException) -> sa_exc.DBAPIError:
    """As SQLAlchemy raises a driver's error: ``orig`` holds it."""
    return sa_exc.DBAPIError("SELECT 1", None, error)


def raised_from(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (asyncpg.SerializationError("40001"), Failure.CONFLICT),
        (asyncpg.DeadlockDetectedError("40P01"), Failure.CONFLICT),
        (asyncpg.LockNotAvailableError("55P03"), Failure.CONFLICT),
        (asyncpg.QueryCanceledError("57014, the statement timeout"), Failure.CONFLICT),
        (asyncpg.AdminShutdownError("57P01"), Failure.UNAVAILABLE),
        (asyncpg.CannotConnectNowError("57P03"), Failure.UNAVAILABLE),
        (asyncpg.TooManyConnectionsError("53300"), Failure.UNAVAILABLE),
        (asyncpg.ConnectionDoesNotExistError("gone"), Failure.UNAVAILABLE),
        (asyncpg.InterfaceError("another operation is in progress"), Failure.UNAVAILABLE),
        (asyncpg.InternalClientError("cannot switch to state 15"), Failure.UNAVAILABLE),
        (ConnectionRefusedError(111, "refused"), Failure.UNAVAILABLE),
        (TimeoutError(), Failure.UNAVAILABLE),
        (sa_exc.TimeoutError("the pool had no connection"), Failure.UNAVAILABLE),
        (wrapped(asyncpg.DeadlockDetectedError("40P01")), Failure.CONFLICT),
        (wrapped(asyncpg.AdminShutdownError("57P01")), Failure.UNAVAILABLE),
        (raised_from(RuntimeError("batch"), OSError("reset")), Failure.UNAVAILABLE),
        (asyncpg.UniqueViolationError("23505"), Failure.BUG),
        (asyncpg.CheckViolationError("23514"), Failure.BUG),
        (wrapped(ValueError("a bad value")), Failure.BUG),
        (KeyError("a bug of ours"), Failure.BUG),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_classify(error: BaseException, failure: Failure) -> None:
    assert classify(error) is failure


def test_an_invalidated_connection_is_unavailable_whatever_its_error() -> None:
    error = wrapped(ValueError("read on a dead connection"))
    error.connection_invalidated = True
    assert classify(error) is Failure.UNAVAILABLE


def test_chain_follows_orig_and_cause_and_context_only_when_asked() -> None:
    root = OSError("reset")
    middle = wrapped(root)
    top = raised_from(RuntimeError("top"), middle)
    assert chain(top) == [top, middle, root]
    handled = RuntimeError("while handling")
    handled.__context__ = root
    assert chain(handled) == [handled]
    assert chain(handled, implicit=True) == [handled, root]
