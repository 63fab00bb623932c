"""The pure domain: values, commands, errors, the order state machine, allocation.

Imports nothing outside the standard library.
"""
