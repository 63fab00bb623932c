"""`inventory dev`: the embedded stack, migrated and seeded, with the service on top.

Starts Tansu, PostgreSQL and Redis from pip wheels (each skipped when its INVENTORY_* URL is
set), applies the migrations, seeds demo data, generates an admin token, prints the
endpoints and "ready", then runs the service until Ctrl-C (SIGINT) or SIGTERM, and stops
everything it started.

Next to a live `inventory dev` on the same data folder or ports it refuses at once, changing
nothing (exit 2). `--reset` deletes the data folder (PostgreSQL data, logs) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import importlib.util
import inspect
import json
import os
import secrets
import shlex
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.config import Settings
    from service.devtools.ports import StackPorts
    from service.devtools.stack import EmbeddedStack

SERVE_MODULE = "service.lifecycle"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dev",
        help="run the service on an embedded broker, PostgreSQL and Redis (what `make run` does)",
        description=__doc__,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where PostgreSQL data and logs live (default: INVENTORY_DEV_DATA_DIR, "
        "./.inventory-dev)",
    )
    # no default here: the fixed ports live in service.devtools, which `inventory serve` (the
    # same parser) must not import; `_stack_ports` fills them in
    parser.add_argument("--postgres-port", type=int)
    parser.add_argument("--redis-port", type=int)
    parser.add_argument("--kafka-port", type=int)
    parser.add_argument(
        "--stack-only",
        action="store_true",
        help="start, migrate and seed the stack but do not run the service",
    )
    parser.add_argument(
        "--reset",
        action="store_true",
        help="delete the data folder (PostgreSQL data and logs) and exit; refused while an "
        "`inventory dev` runs on it",
    )
    parser.set_defaults(handler=run)


MOVE_HINT = (
    "stop it first (Ctrl-C in its terminal), or move this one: --data-dir, --postgres-port, "
    "--redis-port, --kafka-port, INVENTORY_GRPC_PORT, INVENTORY_HTTP_PORT"
)


def run(args: argparse.Namespace) -> int:
    from service.config import Settings
    from service.devtools.instance import StackInUse
    from service.devtools.process import StackError
    from service.devtools.stack import EmbeddedStack, reset_data_dir
    from service.failures import EXIT_CANNOT_RUN, EXIT_OK, explained

    base = Settings()
    data_dir = (args.data_dir or base.dev_data_dir).resolve()
    if args.reset:
        try:
            removed = reset_data_dir(data_dir)
        except (StackError, StackInUse) as exc:
            print(f"inventory dev: {exc}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        print(f"inventory dev: {'removed' if removed else 'nothing to remove at'} {data_dir}")
        return EXIT_OK
    ports = _stack_ports(args)
    service_ports = {} if args.stack_only else {"grpc": base.grpc_port, "http": base.http_port}
    stack = EmbeddedStack.from_env(data_dir, ports, service_ports=service_ports)
    # also when started in the background, where a shell may have ignored SIGINT
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        stack.start()  # stops itself if it fails
    except StackInUse as exc:
        print(f"inventory dev: {exc}; {MOVE_HINT}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except StackError as exc:
        print(f"inventory dev: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        return EXIT_OK
    try:
        token = None if args.stack_only else secrets.token_urlsafe(32)
        settings = _settings_for(stack, base, token)
        with explained(settings):  # an external server that does not answer: one line, exit 2
            revision = _migrate(settings)
            created = asyncio.run(_seed(settings))
            _print_banner(stack, settings, token, time.monotonic() - started)
            print(f"database migrated to {revision}; demo data seeded ({created} new stock rows)")
            _serve(settings, stack_only=args.stack_only)
    except KeyboardInterrupt:
        pass
    except StackError as exc:
        print(f"inventory dev: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    finally:
        # a second Ctrl-C must not cut the shutdown short (each stop is bounded by a timeout)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("inventory dev: stopping the stack", flush=True)
        stack.stop()
        print("inventory dev: stopped", flush=True)
    return EXIT_OK


def _stack_ports(args: argparse.Namespace) -> StackPorts:
    """The ports given on the command line, the fixed ones of `make run` for the rest."""
    from service.devtools.ports import DEV_PORTS

    given = {"postgres": args.postgres_port, "redis": args.redis_port, "kafka": args.kafka_port}
    return dataclasses.replace(DEV_PORTS, **{k: v for k, v in given.items() if v is not None})


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _settings_for(stack: EmbeddedStack, base: Settings, token: str | None) -> Settings:
    """Settings for the service on this stack; also exported for any process it forks."""
    from service.config import Settings

    overrides: dict[str, Any] = dict(stack.overrides)
    if token is not None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        overrides["admin_token_sha256"] = [*base.admin_token_sha256, digest]
    for variable, value in _variables(overrides).items():
        os.environ[variable] = value
    return Settings(**overrides)


def _variables(fields: dict[str, Any]) -> dict[str, str]:
    return {
        f"INVENTORY_{field.upper()}": json.dumps(value) if isinstance(value, list) else str(value)
        for field, value in fields.items()
    }


def _migrate(settings: Settings) -> str | None:
    from db.migrate import head_revision, upgrade

    upgrade(settings.database_url, settings.default_warehouse_id)
    return head_revision()


async def _seed(settings: Settings) -> int:
    from db.seed import seed_demo
    from db.session import create_engine

    engine = create_engine(settings.database())
    try:
        return await seed_demo(engine, settings.default_warehouse_id)
    finally:
        await engine.dispose()


def _serve(settings: Settings, *, stack_only: bool) -> None:
    if not stack_only and importlib.util.find_spec(SERVE_MODULE) is not None:
        from service import event_loop

        lifecycle = importlib.import_module(SERVE_MODULE)
        # returns on SIGINT / SIGTERM
        event_loop.run(_run_service(lifecycle.run, settings), settings.event_loop)
        return
    reason = "--stack-only" if stack_only else f"{SERVE_MODULE} does not exist yet"
    print(
        f"the stack is up with a migrated, seeded database; the service is not running "
        f"({reason}). Ctrl-C stops everything.",
    )
    print("ready", flush=True)
    while True:
        signal.pause()


async def _run_service(run: Callable[..., Coroutine[Any, Any, None]], settings: Settings) -> None:
    """Run the service; say "ready" once it serves (when ``run`` can tell, else at once)."""
    if "ready" not in inspect.signature(run).parameters:
        print("ready", flush=True)
        await run(settings)
        return
    ready = asyncio.Event()
    service = asyncio.create_task(run(settings, ready=ready))
    serving = asyncio.create_task(ready.wait())
    await asyncio.wait({service, serving}, return_when=asyncio.FIRST_COMPLETED)
    if serving.done():
        print("ready", flush=True)
    else:
        serving.cancel()
    await service


def _print_banner(
    stack: EmbeddedStack, settings: Settings, token: str | None, took_s: float
) -> None:
    def where(component: object) -> str:
        return "embedded" if component is not None else "external"

    postgres = stack.postgres.libpq_url if stack.postgres else "(INVENTORY_DATABASE_URL)"
    lines = [
        f"inventory dev: stack up in {took_s:.1f} s; data and logs under {stack.data_dir}",
        f"  PostgreSQL  {postgres}  [{where(stack.postgres)}]",
        f"  Redis       {settings.redis_url}  [{where(stack.redis)}]",
        f"  Kafka       {settings.kafka_bootstrap}  [{where(stack.broker)}]",
    ]
    if token is None:  # --stack-only: what a service started elsewhere (an IDE) needs
        lines.append("for a service started from an IDE or another shell:")
        lines += [f"export {line}" for line in _ide_variables(stack, settings)]
    else:
        lines += [
            f"  gRPC        127.0.0.1:{settings.grpc_port}",
            f"  HTTP        http://127.0.0.1:{settings.http_port}/health  /readiness  /metrics",
            f"  admin token {token}",
            "              (UpdateStock sends 'authorization: Bearer <token>'; for the grpcurl "
            "lines:",
            f"               export INVENTORY_ADMIN_TOKEN={token})",
        ]
    print("\n".join(lines), flush=True)


def _ide_variables(stack: EmbeddedStack, settings: Settings) -> list[str]:
    """``NAME=value`` for the stack's URLs, the dev broker's timings, a pinned token digest."""
    fields: dict[str, Any] = dict(stack.overrides)
    if settings.admin_token_sha256:
        fields["admin_token_sha256"] = settings.admin_token_sha256
    return [f"{name}={shlex.quote(value)}" for name, value in _variables(fields).items()]
