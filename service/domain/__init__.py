"""The pure domain: values, commands, errors, the order state machine, allocation, and the
batch planner (``planner``) with the snapshot it reads, the plan it writes and the wire format
of the events it produces (``snapshot``, ``plan``, ``events``).

Imports nothing outside the standard library.
"""
