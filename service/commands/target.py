"""Where a command connects: the ``INVENTORY_*`` URLs it is given, else the `make run` stack.

``command_settings(command, needs=...)`` is the one way a command builds its Settings:

- a URL set in the environment (or passed as an override, e.g. loadgen's ``--bootstrap``) wins;
- otherwise the live `inventory dev` on ``INVENTORY_DEV_DATA_DIR`` (default ``.inventory-dev``)
  says where its servers are (``service/devtools/instance.py``), wherever its ports were moved;
- with none running, the fixed dev ports (``DEV_PORTS``): the connection then fails with a line
  that says so.

It prints one line on stderr naming what the command connects to and where that came from.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from service.config import Settings

LABELS = {"database_url": "PostgreSQL", "kafka_bootstrap": "Kafka", "redis_url": "Redis"}


def dev_stack_urls(settings: Settings) -> tuple[dict[str, str], str]:
    """The URLs of the `make run` stack, and how they were found."""
    from service.devtools.instance import live_instance
    from service.devtools.ports import DEV_PORTS, HOST
    from service.devtools.postgres import DATABASE_NAME, POSTGRES_USER

    fixed = {
        "database_url": (
            f"postgresql+asyncpg://{POSTGRES_USER}@{HOST}:{DEV_PORTS.postgres}/{DATABASE_NAME}"
        ),
        "redis_url": f"redis://{HOST}:{DEV_PORTS.redis}/0",
        "kafka_bootstrap": f"{HOST}:{DEV_PORTS.kafka}",
    }
    instance = live_instance(settings.dev_data_dir)
    if instance is not None and instance.urls:
        return {**fixed, **instance.urls}, f"the `inventory dev` running as pid {instance.pid}"
    return fixed, f"the ports of `make run`; none runs on {settings.dev_data_dir}"


def command_settings(
    command: str, needs: Sequence[str] = ("database_url",), **overrides: Any
) -> Settings:
    """Settings for ``inventory <command>``, which connects to the ``needs`` URL fields."""
    origins = {
        field: "command line" if field in overrides else f"INVENTORY_{field.upper()}"
        for field in needs
        if field in overrides or os.environ.get(f"INVENTORY_{field.upper()}")
    }
    missing = [field for field in needs if field not in origins]
    if missing:
        urls, found_by = dev_stack_urls(Settings(**overrides))
        for field in missing:
            overrides[field] = urls[field]
            origins[field] = found_by
    settings = Settings(**overrides)
    print(f"inventory {command}: {describe(settings, origins)}", file=sys.stderr, flush=True)
    return settings


def describe(settings: Settings, origins: dict[str, str]) -> str:
    """``connecting to Kafka a:1, PostgreSQL postgresql://... (where they came from)``."""
    from service.failures import shown_url

    by_origin: dict[str, list[str]] = {}
    for field, origin in origins.items():
        url = getattr(settings, field)
        shown = shown_url(url) if field == "database_url" else url
        by_origin.setdefault(origin, []).append(f"{LABELS.get(field, field)} {shown}")
    groups = [f"{', '.join(targets)} ({origin})" for origin, targets in by_origin.items()]
    return "connecting to " + "; ".join(groups)


WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


def grpc_target(command: str, override: str | None = None) -> str:
    """``host:port`` of the gRPC API for ``inventory <command>``, like ``command_settings``:
    ``override`` (``--target``) wins; else ``INVENTORY_GRPC_HOST`` / ``INVENTORY_GRPC_PORT``
    when either is set (a wildcard bind address means this host); else the gRPC port of the
    live `inventory dev` on ``INVENTORY_DEV_DATA_DIR``; else the default port on this host.
    Prints one line on stderr naming the target and where it came from."""
    settings = Settings()
    if override:
        target, origin = override, "command line"
    elif os.environ.get("INVENTORY_GRPC_HOST") or os.environ.get("INVENTORY_GRPC_PORT"):
        host = "127.0.0.1" if settings.grpc_host in WILDCARD_HOSTS else settings.grpc_host
        target, origin = f"{host}:{settings.grpc_port}", "INVENTORY_GRPC_HOST/PORT"
    else:
        from service.devtools.instance import live_instance
        from service.devtools.ports import HOST

        instance = live_instance(settings.dev_data_dir)
        port = instance.ports.get("grpc") if instance is not None else None
        if instance is not None and port:
            target = f"{HOST}:{port}"
            origin = f"the `inventory dev` running as pid {instance.pid}"
        else:
            target = f"{HOST}:{settings.grpc_port}"
            origin = f"the port of `make run`; none runs on {settings.dev_data_dir}"
    print(f"inventory {command}: connecting to gRPC {target} ({origin})", file=sys.stderr)
    return target
