"""The embedded stack for benchmarks: free ports, a temporary directory, migrated."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from db.migrate import upgrade
from service.config import Settings
from service.devtools.stack import EmbeddedStack


@contextmanager
def bench_stack() -> Iterator[tuple[EmbeddedStack, Settings]]:
    data_dir = Path(tempfile.mkdtemp(prefix="inventory-bench-"))
    try:
        with EmbeddedStack.from_env(data_dir) as stack:
            settings = Settings(**stack.overrides)
            upgrade(settings.database_url)
            yield stack, settings
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
