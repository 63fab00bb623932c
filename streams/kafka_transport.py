"""Faust's aiokafka transport with a configurable fetch wait.

Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer. Apache Kafka answers a fetch as
soon as data arrives, so the wait costs nothing there; Tansu (the embedded broker) holds every
fetch for the full wait, which put ~750 ms on each hop of the dev and test stacks (order event
→ worker, stock-changed → cache, reservation → expiry table). ``Settings.kafka_fetch_max_wait_ms``
sets it; the embedded stack uses a short one.
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


def app_class(fetch_max_wait_ms: int) -> type[faust.App]:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
            consumer = super()._create_worker_consumer(transport)
            # read by AIOKafkaConsumer.start() when it builds its fetcher
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class ShortWaitConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        Consumer = ShortWaitConsumer

    class App(faust.App):
        def _new_transport(self) -> Any:
            return Transport(self.conf.broker_consumer, self)

    return App
