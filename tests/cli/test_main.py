"""The CLI conventions: version, help, exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agave_perf", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


class TestConventions:
    def test_version(self) -> None:
        """--version prints the package version and exits 0."""
        from agave_perf import __version__

        r = run("--version")
        assert r.returncode == 0
        assert __version__ in r.stdout

    def test_unknown_command_is_usage_error(self) -> None:
        """An unknown command exits 2 with one error line, no traceback."""
        r = run("no-such-command")
        assert r.returncode == 2
        assert "Traceback" not in r.stderr
        assert "agave-perf: error:" in r.stderr

    def test_help_lists_commands(self) -> None:
        """--help documents the exit codes."""
        r = run("--help")
        assert r.returncode == 0
        assert "Exit codes" in r.stdout


class TestExitCodes:
    def test_ctx_exit_code_is_kept(self) -> None:
        """A command ending with ctx.exit(n) exits n (non-standalone click returns it)."""
        import click

        from agave_perf.cli import main as main_mod

        @click.command()
        def boom() -> None:
            click.get_current_context().exit(5)

        main_mod.COMMANDS["boom-test"] = f"{__name__}:_BOOM"
        globals()["_BOOM"] = boom
        try:
            import pytest

            with pytest.raises(SystemExit) as info:
                main_mod.main(["boom-test"])
            assert info.value.code == 5
        finally:
            del main_mod.COMMANDS["boom-test"]
