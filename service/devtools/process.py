"""The child processes of the embedded stack, and the ones a killed earlier stack left running.

Every process runs in its own session, so a Ctrl-C in the terminal reaches only the parent,
which stops the service first and then the stack, in that order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0


class StackError(RuntimeError):
    """A component of the embedded stack failed to start or stop."""


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ManagedProcess:
    """One child process with a log file: start, stop (signal, wait, kill), pause, resume."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
        user: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.user = user
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            out.write(f"--- {time.strftime('%F %T')} start: {' '.join(self.argv)}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                user=self.user,
                start_new_session=True,  # a terminal's Ctrl-C goes to the parent only
            )
        self._paused = False

    def check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise StackError(
                f"{self.name} exited with code {self._proc.returncode}; "
                f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def pause(self) -> None:
        if self._proc is not None and self.running:
            self._proc.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        if self._proc is not None and self.running:
            self._proc.send_signal(signal.SIGCONT)
        self._paused = False

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        proc = self._proc
        if proc is None:
            return
        descendants = _descendants(proc.pid)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if self._paused:
                    proc.send_signal(signal.SIGCONT)
                proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", self.name, timeout_s)
                proc.kill()
                proc.wait()
        _kill_leftovers(descendants)
        self._proc = None
        self._paused = False


def _descendants(pid: int) -> list[Any]:
    try:
        import psutil
    except ImportError:  # psutil comes with the dev extra; without it, trust the parent
        return []
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _kill_leftovers(processes: Sequence[Any], grace_s: float = 2.0) -> None:
    if not processes:
        return
    import psutil

    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


# --- the pid file: what a start after a SIGKILL of its owner must stop ---------------------


def write_pid_file(pid_file: Path, processes: Sequence[ManagedProcess]) -> None:
    records = [record for process in processes if (record := _process_record(process)) is not None]
    pid_file.write_text(json.dumps(records))


def _process_record(process: ManagedProcess) -> dict[str, Any] | None:
    if process.pid is None:
        return None
    try:
        import psutil

        created = psutil.Process(process.pid).create_time()
    except Exception:  # psutil missing or the process already gone
        return None
    # the creation time tells the process apart from a later one that reuses its pid
    return {"name": process.name, "pid": process.pid, "created": created}


def stop_leftovers(pid_file: Path) -> None:
    """Stop the processes a killed earlier stack on this data directory left running.

    Only call it while holding the data directory's ``InstanceLock``: then their owner is gone.
    """
    try:
        records = json.loads(pid_file.read_text())
        import psutil
    except (OSError, ValueError, ImportError):
        return
    leftovers = []
    for record in records:
        try:
            proc = psutil.Process(int(record["pid"]))
            if abs(proc.create_time() - float(record["created"])) < 0.01:
                leftovers.append(proc)
        except (psutil.Error, KeyError, TypeError, ValueError):
            continue
    for proc in leftovers:
        log.warning("stopping %s (pid %d) left by an earlier run", proc.name(), proc.pid)
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGINT if proc.name() == "postgres" else signal.SIGTERM)
    _, alive = psutil.wait_procs(leftovers, timeout=STOP_TIMEOUT_S)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    pid_file.unlink(missing_ok=True)
