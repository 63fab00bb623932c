"""Drive the service with a mixed load, inject faults, then audit the books.

Used by the chaos suite (tests/chaos), the load test (tests/load) and bench/load.py:

- ``scenario_settings``: Settings on topics and a consumer group of their own.
- ``ServiceProcess``: ``inventory serve --role api|worker|all`` as a subprocess with its own log,
  on free ports; ``kill()`` is a SIGKILL.
- ``EventLoad``: order events into Kafka at a steady rate: every order is created, some are then
  paid or cancelled, a few events are sent twice. A send that fails is sent again with the same
  event id until the broker has it (at-least-once, like any producer), so every event counted
  in ``events`` is in the topic.
- ``RpcLoad``: N gRPC clients reserving (then committing or releasing) orders of their own, and
  reading stock. A call that fails with UNAVAILABLE (or times out) is retried with the SAME order
  id until it gets an answer; what each client was finally told is kept per order.
- ``settle`` waits until every event sent was processed and the outbox drained; ``audit``
  checks the books: the invariant check, one final outcome per order in the ledger that agrees
  with its result events (and with what its client was told), every order fully reserved or not
  at all, no stock reserved twice for one order.

Nothing here asserts on timing; figures (rates, p99) are returned for the tests to print.
``CHAOS_LOG_LEVEL=DEBUG`` runs the service subprocesses at DEBUG (their logs are under the
test's tmp_path), which also shows Faust's and aiokafka's rebalances.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from grpc_status import rpc_status
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.session import snapshot
from service.api.generated import inventory_pb2 as pb
from service.api.generated import inventory_pb2_grpc as pb_grpc
from service.config import Settings
from service.devtools.observe import TopicCollector
from service.devtools.ports import free_port
from service.invariants import check
from tests.waiting import wait_for

WHEN = "2024-05-01T12:00:00Z"
LOG_LEVEL_ENV = "CHAOS_LOG_LEVEL"  # the log level of the service subprocesses, when set
ROOT = Path(__file__).resolve().parents[2]
DIAGNOSTIC_METRICS = ("inventory_consumer_lag", "inventory_events_total", "inventory_ready")
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
DATABASE_COMING_BACK = (OSError, DBAPIError)  # what a check may raise after a database fault
ORDER_KINDS = ("created", "paid", "cancelled")

# What an order's events allow as its final state, whatever order they arrive in
# (docs/architecture.md, Order semantics).
STREAM_FINAL = {
    frozenset({"created"}): {"RESERVED", "REJECTED"},
    frozenset({"created", "paid"}): {"COMMITTED", "COMMIT_FAILED"},
    frozenset({"created", "cancelled"}): {"RELEASED"},
}
# The reservation status that an order in this state holds for all of its items.
HOLDS = {"RESERVED": "PENDING", "COMMITTED": "COMMITTED"}


# Retention at seconds, so that the pruner runs under the load (docs/operations.md, Data
# lifecycle): finished orders pruned 10 s after their last change (tombstones left), movements
# after 20 s, a round every 2 s in small batches. The dedup window stays longer than a run:
# ``settle`` counts the processed events by their dedup rows (tests/integration/
# test_retention.py covers a redelivery after they are pruned).
PRUNING: dict[str, Any] = {
    "order_retention": timedelta(seconds=10),
    "dedup_window": timedelta(seconds=600),
    "movement_retention": timedelta(seconds=20),
    "tombstone_retention": timedelta(seconds=600),
    "prune_interval_s": 2.0,
    "prune_batch_size": 200,
    "prune_pause_ms": 10.0,
}


def scenario_settings(overrides: dict[str, Any], name: str, **extra: Any) -> Settings:
    changes: dict[str, Any] = {
        "topic_partitions": 4,
        "broker_commit_interval_s": 0.5,
        "grpc_host": "127.0.0.1",
        "http_host": "127.0.0.1",
        **extra,
    }
    return Settings(**overrides).isolated(f"{name}-{uuid.uuid4().hex[:6]}", **changes)


def hot_skus(prefix: str, n: int = 10) -> list[str]:
    return [f"{prefix}-hot-{i}" for i in range(n)]


# -- the service as a subprocess ------------------------------------------------------------


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, **settings.as_env(), **extra}


class ServiceProcess:
    """``inventory serve --role ROLE`` on free gRPC and HTTP ports (fixed across restarts)."""

    def __init__(self, settings: Settings, role: str, log_path: Path, **extra_env: str) -> None:
        self.role = role
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.settings = settings.model_copy(
            update={"grpc_port": self.grpc_port, "http_port": self.http_port}
        )
        self.log_path = log_path
        if LOG_LEVEL_ENV in os.environ:  # e.g. DEBUG: Faust's and aiokafka's rebalance lines too
            extra_env = {"INVENTORY_LOG_LEVEL": os.environ[LOG_LEVEL_ENV], **extra_env}
        self._env = service_env(self.settings, INVENTORY_ROLE=role, **extra_env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        script = Path(sys.executable).with_name("inventory")
        argv = ([str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]) + [
            "serve",
            "--role",
            self.role,
        ]
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv, env=self._env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1

    async def wait_ready(self, within_s: float = 90.0) -> None:
        url = f"http://127.0.0.1:{self.http_port}/readiness"
        await wait_for(
            lambda: asyncio.to_thread(_http_ok, url),
            within_s=within_s,
            what=f"the {self.role} process ready",
            every_s=0.2,
            alive=[self.check_alive],
            diagnose=self.tail,
        )

    async def started(self) -> ServiceProcess:
        self.start()
        await self.wait_ready()
        return self

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"the {self.role} process exited with {self.proc.returncode}: {self.tail()}"
            )

    def kill(self) -> None:
        """kill -9: no drain, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    async def stop(self, within_s: float = 30.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, within_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def metrics(self, names: Sequence[str] = DIAGNOSTIC_METRICS) -> str:
        """A few lines of the process's /metrics (consumer lag, events), for a failure."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                lines = answer.read().decode().splitlines()
        except OSError as error:
            return f"(no metrics: {error})"
        return "; ".join(line for line in lines if line.startswith(tuple(names)))

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


# -- order events ---------------------------------------------------------------------------


@dataclass
class StreamOrder:
    order_id: str
    items: tuple[tuple[str, int], ...]
    kinds: set[str] = field(default_factory=set)  # event kinds the broker acknowledged


class EventLoad:
    """Order events at ``rate`` orders/s; some are paid or cancelled shortly after creation."""

    def __init__(
        self,
        settings: Settings,
        skus: Sequence[str],
        *,
        rate: float = 100.0,
        paid: float = 0.4,
        cancelled: float = 0.2,
        duplicates: float = 0.05,
        prefix: str = "ev",
        seed: int = 1,
    ) -> None:
        self._settings = settings
        self._skus = list(skus)
        self._rate = rate
        self._paid = paid
        self._cancelled = cancelled
        self._duplicates = duplicates
        self._prefix = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self._rng = random.Random(seed)
        self.orders: dict[str, StreamOrder] = {}
        self.events: set[tuple[str, str]] = set()  # (kind, event_id) the broker has
        self.sent = 0  # sends acknowledged, duplicates included
        self.send_failures = 0  # sends that failed and were repeated
        self._producer: AIOKafkaProducer | None = None
        self._runner: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.started_at = 0.0
        self.stopped_at = 0.0

    def _topic(self, kind: str) -> str:
        s = self._settings
        return {
            "created": s.topic_order_created,
            "paid": s.topic_order_paid,
            "cancelled": s.topic_order_cancelled,
        }[kind]

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=False,  # Tansu refuses InitProducerId
            linger_ms=5,
            request_timeout_ms=15_000,
        )
        await self._producer.start()
        self.started_at = time.monotonic()
        self._runner = asyncio.create_task(self._run(), name="event-load")

    async def stop(self, within_s: float = 120.0) -> None:
        """Stop creating orders; every event already decided on is sent (retried) first."""
        self._stopping = True
        if self._runner is not None:
            await self._runner
        deadline = time.monotonic() + within_s
        while self._sends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._sends)} order events could not be sent")
            await asyncio.wait(set(self._sends), timeout=1.0)
        self.stopped_at = time.monotonic()
        if self._producer is not None:
            await self._producer.stop()

    async def abort(self) -> None:
        """After a failure: cancel everything, quietly (a no-op after ``stop``)."""
        self._stopping = True
        tasks = [t for t in (self._runner, *self._sends) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._producer is not None and not self.stopped_at:
            with contextlib.suppress(Exception):
                await self._producer.stop()

    async def _run(self) -> None:
        n = 0
        while not self._stopping:
            n += 1
            due = self.started_at + n / self._rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._spawn(self._order(n))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _order(self, n: int) -> None:
        rng = self._rng
        order_id = f"{self._prefix}-{n}"
        chosen = rng.sample(self._skus, rng.randint(1, min(2, len(self._skus))))
        order = StreamOrder(order_id, tuple((sku, rng.randint(1, 3)) for sku in chosen))
        self.orders[order_id] = order
        created = {
            "event_id": f"{order_id}-created",
            "order_id": order_id,
            "items": [{"product_id": sku, "quantity": q} for sku, q in order.items],
            "occurred_at": WHEN,
        }
        roll = rng.random()
        follow = (
            "paid"
            if roll < self._paid
            else "cancelled"
            if roll < self._paid + self._cancelled
            else None
        )
        twice = rng.random() < self._duplicates
        pause = rng.uniform(0.05, 0.5)
        await self._send(order, "created", created)
        if twice:  # a redelivered event: the same event id again
            await self._send(order, "created", created)
        if follow is None:
            return
        if not self._stopping:
            await asyncio.sleep(pause)
        body = {"event_id": f"{order_id}-{follow}", "order_id": order_id, "occurred_at": WHEN}
        if follow == "cancelled":
            body["reason"] = "changed my mind"
        await self._send(order, follow, body)

    async def _send(self, order: StreamOrder, kind: str, body: dict[str, Any]) -> None:
        assert self._producer is not None
        raw = json.dumps(body).encode()
        delay = 0.1
        while True:
            try:
                await self._producer.send_and_wait(
                    self._topic(kind), raw, key=order.order_id.encode()
                )
                break
            except KafkaError:
                self.send_failures += 1  # maybe written after all: the same event id is harmless
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        order.kinds.add(kind)
        self.events.add((kind, body["event_id"]))
        self.sent += 1

    @property
    def rate(self) -> float:
        end = self.stopped_at or time.monotonic()
        return self.sent / max(end - self.started_at, 1e-9)


# -- gRPC clients ---------------------------------------------------------------------------


@dataclass
class RpcOrder:
    order_id: str
    items: tuple[tuple[str, int], ...]
    told: str | None = None  # RESERVED / COMMITTED / RELEASED, or REFUSED (nothing recorded)
    settled: bool = True  # False: a call never got an answer before the load gave up
    retries: int = 0  # calls of this order that failed retryably and were sent again
    duplicate_after_retry: bool = False  # a retried ReserveStock found the first one had landed


@dataclass
class Calls:
    codes: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[str] = field(default_factory=list)
    retryable_at: list[float] = field(default_factory=list)  # monotonic times of UNAVAILABLE...

    def count(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.codes[method, code.name] += 1
        if code in (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION):
            self.latencies[method].append(seconds)
        if code in RETRYABLE:
            self.retryable_at.append(time.monotonic())

    def by_code(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for (_, code), n in self.codes.items():
            total[code] += n
        return total

    def p99_ms(self, method: str) -> float:
        return percentile(self.latencies.get(method, []), 0.99) * 1000


def state_name(state: int) -> str:
    return pb.OrderState.Name(state).removeprefix("ORDER_STATE_")  # type: ignore[arg-type]


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


class RpcLoad:
    """``clients`` concurrent callers, each reserving its own orders one after another.

    After a reservation a caller commits (``commit``), releases (``release``) or leaves it; in
    between it reads (GetStock) with probability ``reads``. ``admin_token`` adds a restocking
    caller (UpdateStock ADD on every SKU every ``restock_every_s``).
    """

    def __init__(
        self,
        target: str,
        skus: Sequence[str],
        *,
        clients: int = 16,
        channels: int = 1,
        commit: float = 0.5,
        release: float = 0.3,
        reads: float = 0.2,
        max_items: int = 2,
        timeout_s: float = 10.0,
        admin_token: str | None = None,
        restock_every_s: float = 1.0,
        restock_quantity: int = 20,
        prefix: str = "rpc",
        seed: int = 2,
    ) -> None:
        self._target = target
        self._skus = list(skus)
        self.clients = clients
        self._channel_count = channels
        self._commit = commit
        self._release = release
        self._reads = reads
        self._max_items = max_items
        self._timeout_s = timeout_s
        self._token = admin_token
        self._restock_every_s = restock_every_s
        self._restock_quantity = restock_quantity
        self._prefix = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self._seed = seed
        self.orders: dict[str, RpcOrder] = {}
        self.calls = Calls()
        self.restocked = 0
        self._channels: list[grpc.aio.Channel] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._give_up_at = float("inf")
        self.started_at = 0.0
        self.stopped_at = 0.0
        self.in_flight_reserves: set[str] = set()

    async def start(self) -> None:
        self._channels = [
            grpc.aio.insecure_channel(self._target) for _ in range(self._channel_count)
        ]
        self.started_at = time.monotonic()
        self._tasks = [
            asyncio.create_task(self._client(i), name=f"rpc-client-{i}")
            for i in range(self.clients)
        ]
        if self._token is not None:
            self._tasks.append(asyncio.create_task(self._restocker(), name="rpc-restock"))

    async def stop(self, drain_s: float = 90.0) -> None:
        """Stop starting orders; calls in progress get up to ``drain_s`` to get an answer."""
        self._stopping = True
        self._give_up_at = time.monotonic() + drain_s
        await asyncio.gather(*self._tasks)
        self.stopped_at = time.monotonic()
        for channel in self._channels:
            await channel.close()

    async def abort(self) -> None:
        """After a failure: cancel every caller, quietly (a no-op after ``stop``)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self.stopped_at:
            for channel in self._channels:
                await channel.close()

    def _stub(self, i: int) -> pb_grpc.InventoryServiceStub:
        return pb_grpc.InventoryServiceStub(self._channels[i % len(self._channels)])

    async def _client(self, i: int) -> None:
        rng = random.Random(self._seed * 1_000 + i)
        stub = self._stub(i)
        n = 0
        while not self._stopping:
            n += 1
            if rng.random() < self._reads:
                await self._call(
                    stub.GetStock,
                    "GetStock",
                    pb.GetStockRequest(product_id=rng.choice(self._skus)),
                    None,
                )
            chosen = rng.sample(self._skus, rng.randint(1, min(self._max_items, len(self._skus))))
            order = RpcOrder(
                f"{self._prefix}-{i}-{n}", tuple((sku, rng.randint(1, 3)) for sku in chosen)
            )
            self.orders[order.order_id] = order
            await self._order(stub, order, rng)

    async def _order(
        self, stub: pb_grpc.InventoryServiceStub, order: RpcOrder, rng: random.Random
    ) -> None:
        request = pb.ReserveStockRequest(
            order_id=order.order_id,
            items=[pb.StockItem(product_id=sku, quantity=q) for sku, q in order.items],
        )
        self.in_flight_reserves.add(order.order_id)
        try:
            answer = await self._call(stub.ReserveStock, "ReserveStock", request, order)
        finally:
            self.in_flight_reserves.discard(order.order_id)
        if isinstance(answer, grpc.aio.AioRpcError):
            if answer.code() is grpc.StatusCode.FAILED_PRECONDITION:
                order.told = "REFUSED"
                self._check_shortage(answer)
            return
        if answer is None:
            return
        order.told = state_name(answer.state)
        if answer.duplicate and order.retries:
            order.duplicate_after_retry = True
        roll = rng.random()
        if roll < self._commit:
            done = await self._call(
                stub.CommitReservation,
                "CommitReservation",
                pb.CommitReservationRequest(order_id=order.order_id),
                order,
            )
            if done is not None and not isinstance(done, grpc.aio.AioRpcError):
                order.told = state_name(done.state)
        elif roll < self._commit + self._release:
            done = await self._call(
                stub.ReleaseReservation,
                "ReleaseReservation",
                pb.ReleaseReservationRequest(order_id=order.order_id, reason="load test"),
                order,
            )
            if done is not None and not isinstance(done, grpc.aio.AioRpcError):
                order.told = state_name(done.state)

    async def _call(
        self, method: Any, name: str, request: Any, order: RpcOrder | None, **kwargs: Any
    ) -> Any:
        """The answer, the final error (not retryable), or None when the load gave up."""
        delay = 0.05
        while True:
            started = time.perf_counter()
            try:
                answer = await method(request, timeout=self._timeout_s, **kwargs)
            except grpc.aio.AioRpcError as error:
                code = error.code()
                self.calls.count(name, code, time.perf_counter() - started)
                if code not in RETRYABLE:
                    if code is not grpc.StatusCode.FAILED_PRECONDITION or name != "ReserveStock":
                        self.calls.unexpected.append(f"{name}: {code.name} {error.details()}")
                    return error
                if order is None:  # a read: not retried
                    return error
                order.retries += 1
                if time.monotonic() > self._give_up_at:
                    order.settled = False
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            self.calls.count(name, grpc.StatusCode.OK, time.perf_counter() - started)
            return answer

    def _check_shortage(self, error: grpc.aio.AioRpcError) -> None:
        """A refusal must be a real shortage: something requested more than was available."""
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        detail = pb.InsufficientStockDetail()
        if status is None or not status.details or not status.details[0].Unpack(detail):
            self.calls.unexpected.append(f"FAILED_PRECONDITION without shortage: {error.details()}")
            return
        if not any(s.requested_quantity > s.available_quantity for s in detail.shortages):
            self.calls.unexpected.append(f"refused without a real shortage: {detail}")

    async def _restocker(self) -> None:
        assert self._token is not None
        stub = self._stub(0)
        metadata = (("authorization", f"Bearer {self._token}"),)
        while not self._stopping:
            await asyncio.sleep(self._restock_every_s)
            for sku in self._skus:
                request = pb.UpdateStockRequest(
                    product_id=sku,
                    quantity=self._restock_quantity,
                    operation=pb.ADD,
                    reason="load test restock",
                )
                answer = await self._call(
                    stub.UpdateStock, "UpdateStock", request, None, metadata=metadata
                )
                if answer is not None and not isinstance(answer, grpc.aio.AioRpcError):
                    self.restocked += self._restock_quantity

    @property
    def ok_calls(self) -> int:
        return sum(n for (_, code), n in self.calls.codes.items() if code == "OK")

    @property
    def rate(self) -> float:
        """Answered calls per second (OK and FAILED_PRECONDITION)."""
        end = self.stopped_at or time.monotonic()
        answered = sum(len(v) for v in self.calls.latencies.values())
        return answered / max(end - self.started_at, 1e-9)


# -- waiting and auditing -------------------------------------------------------------------


async def scalar(db: AsyncEngine, sql: str, **params: Any) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


def checks_alive(processes: Sequence[ServiceProcess]) -> list[Callable[[], None]]:
    """For ``wait_for(alive=...)``: fail at once when one of these processes exited."""
    return [process.check_alive for process in processes]


async def processed_events(db: AsyncEngine) -> int:
    return int(
        await scalar(
            db,
            "SELECT count(*) FROM processed_events WHERE topic IN ('created', 'paid', 'cancelled')",
        )
    )


async def settle(
    db: AsyncEngine,
    events: EventLoad | None,
    *,
    within_s: float = 120.0,
    alive: Sequence[ServiceProcess] = (),
) -> None:
    """Until every event the broker has was processed and the outbox is drained."""
    expected = len(events.events) if events is not None else 0

    async def all_processed() -> bool:
        return await processed_events(db) >= expected

    async def drained() -> bool:
        return not await scalar(db, "SELECT count(*) FROM outbox WHERE published_at IS NULL")

    watching = checks_alive(alive)
    try:
        await wait_for(
            all_processed,
            within_s=within_s,
            what=f"{expected} events processed",
            every_s=0.1,
            alive=watching,
            ignoring=DATABASE_COMING_BACK,
        )
        await wait_for(
            drained,
            within_s=within_s,
            what="the outbox drained",
            every_s=0.1,
            alive=watching,
            ignoring=DATABASE_COMING_BACK,
        )
    except TimeoutError as timeout:
        done = await processed_events(db)
        report = "\n".join(f"{p.role}: {p.metrics()}\n{p.tail(15)}" for p in alive)
        raise TimeoutError(f"{timeout} ({done} processed); {report}") from None


@dataclass
class Audit:
    problems: list[str]
    states: Counter[str]
    stream_orders: int
    rpc_orders: int
    published: int

    def summary(self) -> str:
        states = ", ".join(f"{s} {n}" for s, n in sorted(self.states.items()))
        return (
            f"{self.stream_orders} stream + {self.rpc_orders} RPC orders ({states}); "
            f"{self.published} result events"
        )


async def published_statuses(settings: Settings) -> tuple[dict[str, list[str]], int]:
    """Per order, the statuses on inventory-reservations in first-seen order (a relay that
    died between publish and mark publishes some twice)."""
    out = TopicCollector(settings.kafka_bootstrap, [settings.topic_reservations])
    await out.start()
    try:
        await out.wait_caught_up()
    finally:
        await out.stop()
    records = out.records.get(settings.topic_reservations, [])
    seen: dict[str, dict[str, None]] = defaultdict(dict)
    for record in records:
        seen[record.value["order_id"]][record.value["status"]] = None
    return {order: list(statuses) for order, statuses in seen.items()}, len(records)


async def audit(
    db: AsyncEngine,
    settings: Settings,
    *,
    events: EventLoad | None = None,
    rpcs: Sequence[RpcLoad] = (),
) -> Audit:
    problems = list(await check(db, whole_history=settings.movement_retention is None))
    async with snapshot(db) as conn:
        ledger = dict((await conn.execute(text("SELECT order_id, state FROM orders"))).all())
        # an order pruned by retention is its tombstone's final state, holding nothing
        pruned = dict(
            (await conn.execute(text("SELECT order_id, final_state FROM order_tombstones"))).all()
        )
        for order_id, state in pruned.items():
            ledger.setdefault(order_id, state)
        held: dict[str, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
        rows = await conn.execute(
            text(
                "SELECT order_id, status, product_id, sum(quantity) FROM reservations "
                "GROUP BY order_id, status, product_id"
            )
        )
        for order_id, status, product_id, quantity in rows:
            held[order_id][status, product_id] += int(quantity)
        doubled = (
            await conn.execute(
                # only an expiry gives stock back so that the order may reserve it again
                text(
                    "SELECT order_id, stock_id FROM stock_movements WHERE order_id IS NOT NULL "
                    "GROUP BY order_id, stock_id HAVING "
                    "count(*) FILTER (WHERE operation = 'RESERVE') > "
                    "1 + count(*) FILTER (WHERE operation = 'EXPIRE')"
                )
            )
        ).all()
    problems += [f"order {o} reserved stock {s} twice" for o, s in doubled]
    published, n_published = await published_statuses(settings)

    def consistent(order_id: str, items: tuple[tuple[str, int], ...]) -> str | None:
        state = ledger.get(order_id)
        if state is None:
            if published.get(order_id):
                problems.append(f"{order_id}: published {published[order_id]} but not in ledger")
            return None
        statuses = published.get(order_id, [])
        if not statuses or statuses[-1] != state:
            problems.append(f"{order_id}: ledger {state}, result events {statuses}")
        terminal = {s for s in statuses if s in ("COMMITTED", "RELEASED", "COMMIT_FAILED")}
        if len(terminal) > 1:
            problems.append(f"{order_id}: more than one final outcome {statuses}")
        if order_id in pruned and order_id not in held:
            return str(state)  # its lines went with it
        holding = held.get(order_id, {})
        want = HOLDS.get(state)
        for status, product in holding:
            if status == "PENDING" and want != "PENDING":
                problems.append(f"{order_id}: {state} but {product} still pending")
        if want is not None:
            got = {p: q for (s, p), q in holding.items() if s == want}
            if got != dict(items):
                problems.append(f"{order_id}: {state} holds {got}, ordered {dict(items)}")
        return str(state)

    states: Counter[str] = Counter()
    stream_orders = list(events.orders.values()) if events is not None else []
    for order in stream_orders:
        state = consistent(order.order_id, order.items)
        allowed = STREAM_FINAL.get(frozenset(order.kinds), set())
        if state not in allowed:
            problems.append(f"{order.order_id}: events {sorted(order.kinds)} but ledger {state}")
        states[state or "not recorded"] += 1
    rpc_orders = [o for load in rpcs for o in load.orders.values()]
    for rpc in rpc_orders:
        state = consistent(rpc.order_id, rpc.items)
        states[state or "not recorded"] += 1
        if not rpc.settled:
            problems.append(f"{rpc.order_id}: its client never got an answer")
        elif rpc.told == "REFUSED" and state is not None:
            problems.append(f"{rpc.order_id}: refused to its client but {state} in the ledger")
        elif rpc.told not in (None, "REFUSED") and state != rpc.told:
            problems.append(f"{rpc.order_id}: client told {rpc.told}, ledger {state}")
    known = {o.order_id for o in stream_orders} | {o.order_id for o in rpc_orders}
    strangers = sorted(set(ledger) - known)
    if strangers:
        problems.append(f"{len(strangers)} orders in the ledger nobody sent: {strangers[:5]}")
    return Audit(problems, states, len(stream_orders), len(rpc_orders), n_published)


# -- the hot-SKU load (tests/load and bench/load.py) ----------------------------------------

LOAD_TOKEN = "load-admin-token"


@dataclass
class LoadRun:
    seconds: float
    events: EventLoad
    rpcs: RpcLoad
    audit: Audit
    oversold: list[str]

    def figures(self) -> dict[str, Any]:
        calls = self.rpcs.calls
        reserves = calls.codes.get(("ReserveStock", "OK"), 0)
        refused = calls.codes.get(("ReserveStock", "FAILED_PRECONDITION"), 0)
        return {
            "seconds": self.seconds,
            "clients": self.rpcs.clients,
            "rpc_per_s": round(self.rpcs.rate, 1),
            "reserve_p50_ms": round(percentile(calls.latencies["ReserveStock"], 0.5) * 1000, 2),
            "reserve_p99_ms": round(calls.p99_ms("ReserveStock"), 2),
            "commit_p99_ms": round(calls.p99_ms("CommitReservation"), 2),
            "getstock_p99_ms": round(calls.p99_ms("GetStock"), 2),
            "reserved_orders": reserves,
            "refused_for_shortage": refused,
            "events_per_s": round(self.events.rate, 1),
            "stream_orders": self.audit.stream_orders,
            "errors": len(calls.unexpected),
            "problems": len(self.audit.problems),
            "oversold": len(self.oversold),
        }


async def oversold(db: AsyncEngine) -> list[str]:
    """Per stock row: never more shipped and promised than received (SET once, then ADDs).

    Shipped is what the COMMIT movements took: the committed lines of orders pruned by
    retention are gone, so the committed lines left may only be fewer."""
    async with snapshot(db) as conn:
        received: Counter[str] = Counter()
        sets: Counter[str] = Counter()
        committed: Counter[str] = Counter()
        for stock_id, operation, quantity in await conn.execute(
            text(
                "SELECT stock_id, operation, sum(quantity) FROM stock_movements "
                "WHERE operation IN ('SET', 'ADD', 'COMMIT') GROUP BY stock_id, operation"
            )
        ):
            if operation == "COMMIT":
                committed[str(stock_id)] += int(quantity)
                continue
            received[str(stock_id)] += int(quantity)
            sets[str(stock_id)] += operation == "SET"
        held: dict[tuple[str, str], int] = {
            (str(s), status): int(q)
            for s, status, q in await conn.execute(
                text(
                    "SELECT stock_id, status, sum(quantity) FROM reservations "
                    "GROUP BY stock_id, status"
                )
            )
        }
        stocks = (
            await conn.execute(text("SELECT id, available, reserved, total FROM stocks"))
        ).all()
    problems = []
    for stock_id, available, reserved, total in stocks:
        sid = str(stock_id)
        shipped = committed[sid]
        if held.get((sid, "COMMITTED"), 0) > shipped:
            problems.append(f"stock {sid}: more committed lines than COMMIT movements")
        promised = held.get((sid, "PENDING"), 0)
        if sets[sid] > 1:
            problems.append(f"stock {sid}: counted (SET) more than once; the check assumes once")
        if available < 0 or shipped + promised > received[sid] or total != received[sid] - shipped:
            problems.append(
                f"stock {sid}: received {received[sid]}, shipped {shipped}, promised {promised}, "
                f"levels available {available} reserved {reserved} total {total}"
            )
    return problems


async def run_hot_load(
    overrides: dict[str, Any],
    db: AsyncEngine,
    log_dir: Path,
    *,
    seconds: float,
    clients: int = 64,
    rate: float = 100.0,
    stock: int = 200,
    name: str = "load",
) -> LoadRun:
    """``clients`` gRPC callers against ``serve --role api`` and order events into
    ``serve --role worker``, all on 10 hot SKUs, for ``seconds``; then settle and audit.

    Stock is short on purpose: the restocker adds 50 units per SKU every half second, well
    below what the callers take, so refusals (FAILED_PRECONDITION) are frequent and real."""
    from service.api.auth import token_digest
    from service.bootstrap import build
    from service.domain.commands import UpdateStock
    from service.domain.values import Sku, StockOperation
    from streams.app import ensure_topics

    settings = scenario_settings(
        overrides,
        name,
        admin_token_sha256=[token_digest(LOAD_TOKEN)],
        log_level="WARNING",
        # every movement kept: ``oversold`` counts what each row received from them
        **{**PRUNING, "movement_retention": None},
    )
    skus = hot_skus(name)
    await ensure_topics(settings)
    async with build(settings) as container:
        for sku in skus:
            await container.engine.update_stock(
                UpdateStock(Sku(sku), "default", StockOperation.SET, stock, "load seed")
            )
    api = ServiceProcess(settings, "api", log_dir / f"{name}-api.log")
    worker = ServiceProcess(settings, "worker", log_dir / f"{name}-worker.log")
    events = EventLoad(settings, skus, rate=rate, prefix=f"{name}-ev")
    rpcs = RpcLoad(
        api.target,
        skus,
        clients=clients,
        channels=4,
        commit=0.6,
        release=0.3,
        reads=0.2,
        admin_token=LOAD_TOKEN,
        restock_every_s=0.5,
        restock_quantity=50,
        prefix=f"{name}-rpc",
    )
    try:
        await asyncio.gather(api.started(), worker.started())
        await events.start()
        await rpcs.start()
        await asyncio.sleep(seconds)
        await rpcs.stop()
        await events.stop()
        await settle(db, events, alive=[worker, api])
        result = await audit(db, settings, events=events, rpcs=[rpcs])
        return LoadRun(seconds, events, rpcs, result, await oversold(db))
    finally:
        await rpcs.abort()
        await events.abort()
        await asyncio.gather(api.stop(), worker.stop())
