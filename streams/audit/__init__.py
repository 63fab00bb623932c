"""``inventory audit``: reconcile the order topics with the ledger, so that a silently lost
event becomes visible.

- ``runner.audit``: the entry point (``await audit(settings) -> AuditReport``);
- ``window``: reading the order topics, the DLQ and the group's committed offsets (Kafka);
- ``report``: the pure comparison (``reconcile``) and the report;
- ``states``: the ledger states an order may reach from a set of events (the state machine).

The SQL is in ``db/audit_sql.py``; the command in ``service/commands/audit.py``.
"""

from streams.audit.report import AuditReport, Disagreement, LostRange, Unapplied
from streams.audit.runner import audit
from streams.audit.states import reachable_states
from streams.audit.window import CannotAudit

__all__ = [
    "AuditReport",
    "CannotAudit",
    "Disagreement",
    "LostRange",
    "Unapplied",
    "audit",
    "reachable_states",
]
