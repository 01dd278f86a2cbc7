"""The ``agave-perf`` entry point: the root group, lazy command loading, exit-code mapping."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from agave_perf._version import __version__
from agave_perf.cli._common import runtime, standard_options
from agave_perf.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    AgavePerfError,
)

# name -> "module:attribute"; modules load only when their command runs, which keeps
# `agave-perf --help` and quick commands like `host check` fast.
COMMANDS: dict[str, str] = {
    "ab": "agave_perf.cli.ab:ab",
    "accel": "agave_perf.cli.accel:accel",
    "bench": "agave_perf.cli.bench:bench",
    "build": "agave_perf.cli.build:build",
    "check": "agave_perf.cli.check:check",
    "compare": "agave_perf.cli.compare:compare",
    "flags": "agave_perf.cli.flags:flags",
    "host": "agave_perf.cli.host:host",
    "plan": "agave_perf.cli.plan:plan",
    "report": "agave_perf.cli.report:report",
    "simnet": "agave_perf.cli.simnet:simnet",
    "watch": "agave_perf.cli.watch:watch",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Return every registered command name, sorted."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import and return the named command, or None if unknown."""
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        cmd = getattr(importlib.import_module(module), attr)
        assert isinstance(cmd, click.Command)
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agave-perf")
@standard_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Measure, tune and gate Agave RPC nodes against the performance plan's success criteria.

    Exit codes: 0 ok, 1 SLO or gate failed, 2 usage or config error, 3 node unreachable.
    """
    runtime(ctx)


def _fail(message: str, code: int) -> int:
    click.echo(f"agave-perf: error: {message}", err=True)
    return code


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI and map every error to one line and an exit code."""
    try:
        # non-standalone click returns the code of ctx.exit(n) instead of raising it
        code = cli.main(args=argv, prog_name="agave-perf", standalone_mode=False)
        if isinstance(code, int) and code:
            return sys.exit(code)
    except click.exceptions.Exit as done:
        return sys.exit(done.exit_code)
    except click.Abort:
        return sys.exit(_fail("interrupted", EXIT_INTERRUPTED))
    except click.ClickException as err:
        if isinstance(err, click.UsageError) and err.ctx is not None:
            click.echo(err.ctx.get_usage(), err=True)
        return sys.exit(_fail(err.format_message(), EXIT_USAGE))
    except AgavePerfError as err:
        return sys.exit(_fail(str(err), err.exit_code))
    except KeyboardInterrupt:
        return sys.exit(_fail("interrupted; results measured so far were kept", EXIT_INTERRUPTED))
    except BrokenPipeError:
        return sys.exit(0)
    except Exception as err:  # an internal bug: one line unless debugging
        if os.environ.get("AGAVE_PERF_DEBUG"):
            raise
        return sys.exit(
            _fail(
                f"internal error: {type(err).__name__}: {err} (set AGAVE_PERF_DEBUG=1 for details)",
                EXIT_INTERNAL,
            )
        )
    return sys.exit(0)


if __name__ == "__main__":
    main()
