"""``agave-perf flags audit``: check a validator start script against its release's flags."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agave_perf.cli._common import runtime, standard_options
from agave_perf.errors import FlagsAuditFailed, UsageError
from agave_perf.output import console


@click.group()
def flags() -> None:
    """Validator command-line flags: audit a start script, unit file or command line."""


@flags.command("audit")
@click.argument("file", metavar="FILE|-")
@click.option(
    "--agave-version",
    default=None,
    help="Release the node runs: 1.18, v2.1.13, 2.2-jito, master "
    "(default: from the binary's path, else the newest release).",
)
@click.option(
    "--profile",
    type=click.Choice(["rpc-trading", "none"]),
    default="rpc-trading",
    show_default=True,
    help="Advice profile; 'none' only validates.",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Read host facts (/proc/sys, /sys, /proc/mounts) below this directory.",
)
@click.option(
    "--rpc-method",
    "methods",
    multiple=True,
    metavar="METHOD",
    help="An RPC method the bots call (repeat); decides which --account-index entries are "
    "needed (default: the rpc-trading mix, which needs none).",
)
@click.option(
    "--jito/--no-jito",
    default=None,
    help="The binary is (not) a Jito-Solana build (default: from its path and flags).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "gcc", "sarif"]),
    default=None,
    help="Output: table (default), json (as --json), gcc (file:line:col: error: ... lines "
    "for editors and CI) or sarif (SARIF 2.1.0 for code-scanning services).",
)
@click.option(
    "--fix",
    "do_fix",
    is_flag=True,
    help="Write the corrected script next to FILE as FILE.agave-perf and print a diff.",
)
@standard_options
def audit(
    file: str,
    agave_version: str | None,
    profile: str,
    root: Path,
    methods: tuple[str, ...],
    jito: bool | None,
    fmt: str | None,
    do_fix: bool,
) -> None:
    """Audit the validator flags in FILE (a bash start script, systemd unit or command line).

    Exit codes: 0 no errors, 1 the audit found errors, 2 unreadable input.
    """
    from agave_perf.tune.flags import audit_text, fix

    rt = runtime()
    path: Path | None
    if file == "-":
        path = None
        try:
            text = sys.stdin.read()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"cannot read standard input: {err}") from None
    else:
        path = Path(file)
        try:
            # newline="" keeps CRLF endings visible (and the --fix copy byte-faithful)
            with path.open(encoding="utf-8", newline="") as fh:
                text = fh.read()
        except UnicodeDecodeError:
            raise UsageError(f"{file}: not a text file") from None
        except OSError as err:
            raise UsageError(f"cannot read {file}: {err.strerror or err}") from None
    report = audit_text(
        text,
        source=file,
        version=agave_version,
        profile=profile,
        root=root,
        jito=jito,
        methods=methods,
    )
    if do_fix:
        fix(report, text, path)
    if fmt == "gcc":
        click.echo(report.to_gcc(), nl=False)
    elif fmt == "sarif":
        import json

        click.echo(json.dumps(report.to_sarif(), indent=2))
    elif rt.as_json or fmt == "json":
        rt.as_json = True
        rt.emit(report)
    else:
        # The --fix diff must reach the terminal unwrapped and uncropped, or it is no
        # longer a patch the user can apply.
        console().print(report, soft_wrap=True)
    if report.errors:
        raise FlagsAuditFailed(f"{file}: the flag audit found {report.errors} error(s)")
