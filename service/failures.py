"""Exit codes of every command, and the one line for a failure a person can fix.

- 0: ran, nothing to report;
- 1: ran and found problems (``check``, ``audit``);
- 2: could not run: a bad setting, a server that does not answer, a port that is taken.

``run`` (called by ``service/cli.py`` for every command) prints ``inventory <command>: <line>``
on stderr for ``CannotRun`` and for a bad setting, and returns 2; anything else is a bug and
keeps its traceback. Inside a command, ``explained(settings)`` turns the failures of reaching
PostgreSQL, Kafka or a port into ``CannotRun`` with what to check.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.config import Settings

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CANNOT_RUN = 2


class CannotRun(Exception):
    """The command could not run; the message is the one line to print."""


def run(
    command: str, handler: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    try:
        return int(handler(args))
    except CannotRun as exc:
        line = str(exc)
    except Exception as exc:
        explanation = _bad_setting(exc)
        if explanation is None:
            raise
        line = explanation
    print(f"inventory {command}: {line}", file=sys.stderr)
    return EXIT_CANNOT_RUN


def _bad_setting(error: Exception) -> str | None:
    from pydantic import ValidationError  # imported late: `inventory --help` stays quick

    from service.config import Settings, explain

    if isinstance(error, ValidationError) and error.title == Settings.__name__:
        return explain(error)
    return None


@contextlib.contextmanager
def explained(settings: Settings) -> Iterator[None]:
    """Re-raise a failure to reach what ``settings`` points at as ``CannotRun``."""
    try:
        yield
    except CannotRun:
        raise
    except Exception as exc:
        line = reason(exc, settings)
        if line is None:
            raise
        raise CannotRun(line) from exc


def reason(error: BaseException, settings: Settings) -> str | None:
    """What to check, for a failure that is the environment's and not a bug; else None."""
    from aiokafka.errors import KafkaConnectionError

    from service.db_errors import Failure, chain, classify

    for cause in chain(error, implicit=True):
        text = _first_line(cause)
        if isinstance(cause, KafkaConnectionError):
            return (
                f"cannot reach Kafka at {settings.kafka_bootstrap}: is the broker running? "
                "(INVENTORY_KAFKA_BOOTSTRAP; `make run` starts one)"
            )
        if isinstance(cause, RuntimeError) and "Failed to bind" in text:
            return (
                f"gRPC port {settings.grpc_host}:{settings.grpc_port} is taken: stop what "
                "listens there, or set INVENTORY_GRPC_PORT (0 picks a free one)"
            )
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            return (
                f"HTTP port {settings.http_host}:{settings.http_port} is taken: stop what "
                "listens there, or set INVENTORY_HTTP_PORT (0 picks a free one)"
            )
        if _refused_by_postgres(cause):
            return f"PostgreSQL at {shown_url(settings.database_url)} refused: {text}"
    if classify(error) is Failure.UNAVAILABLE:
        return (
            f"cannot reach PostgreSQL at {shown_url(settings.database_url)} "
            f"({_first_line(chain(error, implicit=True)[-1])}): is it running? "
            "(INVENTORY_DATABASE_URL; `make run` starts one)"
        )
    return None


def shown_url(url: str) -> str:
    """A database URL to print: libpq form (what psql takes), password hidden."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)


def _refused_by_postgres(error: BaseException) -> bool:
    """Reached, but turned away: no such database or role, a wrong password."""
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and (state.startswith("28") or state == "3D000")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
