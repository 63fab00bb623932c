"""Development tooling: the embedded stack, the load generator, the topic observers.

What ``inventory dev`` and ``inventory loadgen``, the tests and the benchmarks run; never the
service itself. Production modules (``inventory serve`` in any role) must not import this
package, ``tests/unit/test_layering.py`` checks it; a dev command imports it inside its
``run``. Its servers come from the ``dev`` extra, which the production image does not
install.

- ``stack``: ``EmbeddedStack``, the three servers as child processes (``broker``,
  ``postgres``, ``redis``), on the ports of ``ports``, started and stopped by ``process``;
- ``instance``: which stack owns a data folder or a port (the lock of ``inventory dev``);
- ``load_generator``: synthetic order events (``inventory loadgen``, benchmarks);
- ``observe``: reading the service's output topics into memory (tests, benchmarks).
"""
