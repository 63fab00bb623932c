"""Reservation expiry: a reservation whose time ran out gives its stock back, on time.

- ``agent.py``: the expiry agent consumes ``inventory-reservations`` into the timer table, a
  changelog-backed Faust table (order id -> ``expires_at``) co-partitioned with that topic;
- ``events.py``: what each of those events means for the schedule;
- ``schedule.py``: the in-memory index of this worker's entries, by due time;
- ``timer.py``: every ``expiry_tick_ms``, expires the due window through the engine;
- ``changelog.py``: writes the table's changelog records in per-partition batches.

The backstop is not here: ``service/sweeper.py`` finds overdue RESERVED orders in PostgreSQL
(its SQL: ``db/expiry_sql.py``) and expires what the timer table missed. It lives in
``service`` because the API process runs it too, and ``service`` does not import ``streams``.
Both expire through the engine as ``service/expiry_port.py`` describes it. The whole design,
recovery and figures: ``docs/expiry.md``.
"""
