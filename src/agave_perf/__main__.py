"""``python -m agave_perf`` runs the CLI."""

from agave_perf.cli.main import main

main()
