"""The ``agave-perf`` entry point: the root group, lazy command loading, exit-code mapping."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from typing import Any

import click

from agave_perf._version import __version__
from agave_perf.cli._common import Runtime, runtime, standard_options
from agave_perf.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    AgavePerfError,
)
from agave_perf.output import dumps, error_document

# name -> "module:attribute"; modules load only when their command runs, which keeps
# `agave-perf --help` and quick commands like `host check` fast.
COMMANDS: dict[str, str] = {
    "ab": "agave_perf.cli.ab:ab",
    "accel": "agave_perf.cli.accel:accel",
    "bench": "agave_perf.cli.bench:bench",
    "build": "agave_perf.cli.build:build",
    "check": "agave_perf.cli.check:check",
    "compare": "agave_perf.cli.compare:compare",
    "experiment": "agave_perf.cli.experiment:experiment",
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

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Like click's, but a misspelled name is matched against the whole registry."""
        name = args[0]
        if name in COMMANDS or name.startswith("-") or ctx.resilient_parsing:
            return super().resolve_command(ctx, args)
        # click suggests from ``self.commands``, which a lazy group leaves empty
        raise click.exceptions.NoSuchCommand(name, possibilities=list(COMMANDS), ctx=ctx)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agave-perf")
@standard_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Measure, tune and gate Agave RPC nodes against the performance plan's success criteria.

    Exit codes: 0 ok, 1 SLO or gate failed, 2 usage or config error, 3 node unreachable.
    """
    runtime(ctx)


def _wants_json(rt: Runtime, args: list[str]) -> bool:
    """Whether the user asked for JSON, even when parsing stopped before ``--json`` was seen."""
    if rt.as_json:
        return True
    head = args[: args.index("--")] if "--" in args else args
    return "--json" in head


def _not_utf8(args: list[str]) -> str | None:
    """The first argument that is not valid UTF-8 (Python keeps such bytes as surrogates)."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return None


def _usage_message(err: click.UsageError) -> str:
    """Click's usage error as one line: the message, then where to look for help."""
    message = " ".join(err.format_message().split()).removesuffix(".")
    path = err.ctx.command_path if err.ctx is not None else "agave-perf"
    return f"{message} (try '{path} --help')"


def _fail(rt: Runtime, as_json: bool, message: str, code: int) -> int:
    """Report an error as one line on stderr, and under --json as one object on stdout.

    When the command already printed its JSON document (a check that ran and failed), that
    document is the answer and stdout keeps exactly one; the line on stderr still says why.
    """
    message = message.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    click.echo(f"agave-perf: error: {message}", err=True)
    if as_json and not rt.emitted:
        with contextlib.suppress(OSError):  # a closed stdout must not hide the exit code
            sys.stdout.write(dumps(error_document(message, code)) + "\n")
            sys.stdout.flush()
    return code


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI and map every error to one line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    rt = Runtime()
    as_json = _wants_json(rt, args)
    bad = _not_utf8(args)
    if bad is not None:
        return sys.exit(
            _fail(
                rt,
                as_json,
                f"argument '{bad}' is not valid UTF-8 (try 'agave-perf --help')",
                EXIT_USAGE,
            )
        )
    try:
        # non-standalone click returns the code of ctx.exit(n) instead of raising it
        code = cli.main(args=args, prog_name="agave-perf", standalone_mode=False, obj=rt)
        if isinstance(code, int) and code:
            return sys.exit(code)
    except click.exceptions.Exit as done:
        return sys.exit(done.exit_code)
    except click.Abort:
        return sys.exit(_fail(rt, _wants_json(rt, args), "interrupted", EXIT_INTERRUPTED))
    except click.UsageError as err:
        return sys.exit(_fail(rt, _wants_json(rt, args), _usage_message(err), EXIT_USAGE))
    except click.ClickException as err:
        return sys.exit(_fail(rt, _wants_json(rt, args), err.format_message(), EXIT_USAGE))
    except AgavePerfError as err:
        return sys.exit(_fail(rt, _wants_json(rt, args), str(err), err.exit_code))
    except KeyboardInterrupt:
        message = "interrupted; results measured so far were kept"
        return sys.exit(_fail(rt, _wants_json(rt, args), message, EXIT_INTERRUPTED))
    except BrokenPipeError:
        return sys.exit(0)
    except Exception as err:  # an internal bug: one line unless debugging
        if os.environ.get("AGAVE_PERF_DEBUG"):
            raise
        message = (
            f"internal error: {type(err).__name__}: {err} (set AGAVE_PERF_DEBUG=1 for details)"
        )
        return sys.exit(_fail(rt, _wants_json(rt, args), message, EXIT_INTERNAL))
    return sys.exit(0)


if __name__ == "__main__":
    main()
