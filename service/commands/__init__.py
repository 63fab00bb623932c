"""One module per `inventory` subcommand.

Each module defines ``register(subparsers)``, which adds its parser and sets
``handler=run``, and ``run(args) -> int``. Heavy imports belong inside ``run`` so that
``inventory --help`` and ``inventory migrate`` stay quick.
"""
