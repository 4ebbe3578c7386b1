"""Command-line subcommands. Each module has ``register(subparsers)`` and imports heavy modules lazily
inside its handlers, so ``vidfm --help`` stays fast."""
