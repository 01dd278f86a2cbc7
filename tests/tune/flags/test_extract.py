"""The dev script that builds the flag lists, run on a small git repository made here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parents[3] / "scripts" / "extract_flags.py"

# clap v2 builder code in the shape the validator's cli.rs has (written for this test)
CLI_RS = r"""
use clap::{App, Arg, SubCommand};
const INCLUDE_KEY: &str = "account-index-include-key";

pub fn app<'a>(version: &'a str, default_args: &'a DefaultArgs) -> App<'a, 'a> {
    App::new("agave-validator")
        .arg(
            Arg::with_name("ledger_path")
                .short("l")
                .long("ledger")
                .value_name("DIR")
                .default_value(&default_args.ledger_path)
                .help("Use DIR as ledger location"), // a comment with "quotes" and (parens)
        )
        .arg(
            Arg::with_name("limit_ledger_size")
                .long("limit-ledger-size")
                .min_values(0)
                .max_values(1)
                .help("Keep this amount of shreds in root slots."),
        )
        /* a block comment: Arg::with_name("not_a_flag").long("not-a-flag") */
        .arg(
            Arg::with_name("account_indexes")
                .long("account-index")
                .takes_value(true)
                .multiple(true)
                .possible_values(&["program-id", "spl-token-owner"])
                .help("Enable an accounts index"),
        )
        .arg(
            Arg::with_name("include_key")
                .long(INCLUDE_KEY)
                .takes_value(true)
                .conflicts_with("account_indexes")
                .hidden(hidden_unless_forced())
                .help("Only index this key"),
        )
        .arg(
            Arg::with_name("known_validators")
                .alias("trusted-validator")
                .long("known-validator")
                .takes_value(true)
                .multiple(true)
                .help('x'.to_string().as_str()),
        )
        .subcommand(
            SubCommand::with_name("exit")
                .arg(Arg::with_name("force").long("force").help("not a run flag")),
        )
        .args(&get_deprecated_arguments())
}

fn deprecated_arguments() -> Vec<DeprecatedArg> {
    let mut res = vec![];
    add_arg!(
        Arg::with_name("skip_poh_verify")
            .long("skip-poh-verify")
            .takes_value(false),
        replaced_by: "skip-startup-ledger-verification",
    );
    add_arg!(Arg::with_name("no_rocksdb_compaction").long("no-rocksdb-compaction"),
        usage_warning: "Disabled by default, \
                        has no effect");
    res
}

pub fn test_app<'a>() -> App<'a, 'a> {
    App::new("solana-test-validator").arg(Arg::with_name("mint").long("mint"))
}

#[cfg(test)]
mod tests {
    fn t() { let _ = Arg::with_name("in_tests").long("in-tests"); }
}
"""


@pytest.fixture(scope="module")
def extractor() -> ModuleType:
    """Load scripts/extract_flags.py as a module."""
    spec = importlib.util.spec_from_file_location("extract_flags", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["extract_flags"] = module
    spec.loader.exec_module(module)
    return module


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


class TestExtract:
    def test_reads_run_flags_from_a_commit(self, extractor: ModuleType, tmp_path: Path) -> None:
        """Run flags and deprecated ones are read; subcommands, test_app, tests and comments not."""
        repo = tmp_path / "repo"
        (repo / "validator/src").mkdir(parents=True)
        (repo / "validator/src/cli.rs").write_text(CLI_RS)
        _git(repo, "init", "-q")
        _git(repo, "add", ".")
        _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
        flags, files = extractor.extract(repo, "HEAD")
        by = {f["long"]: f for f in flags}
        assert files == ["validator/src/cli.rs"]
        assert set(by) == {
            "ledger",
            "limit-ledger-size",
            "account-index",
            "account-index-include-key",
            "known-validator",
            "skip-poh-verify",
            "no-rocksdb-compaction",
        }
        assert by["ledger"]["short"] == "l"
        assert by["ledger"]["takes_value"]
        assert by["ledger"]["default"] == "&default_args.ledger_path"
        assert by["limit-ledger-size"]["value_optional"]
        assert by["account-index"]["multiple"]
        assert by["account-index"]["possible_values"] == ["program-id", "spl-token-owner"]
        assert by["account-index-include-key"]["hidden"]
        assert by["account-index-include-key"]["conflicts_with"] == ["account-index"]
        assert by["known-validator"]["aliases"] == ["trusted-validator"]
        assert by["skip-poh-verify"]["deprecated"]
        assert by["skip-poh-verify"]["replaced_by"] == "skip-startup-ledger-verification"
        assert by["no-rocksdb-compaction"]["usage_warning"] == "Disabled by default, has no effect"

    def test_strip_comments_keeps_strings(self, extractor: ModuleType) -> None:
        """Comment markers inside strings (URLs) survive; real comments are blanked."""
        src = 'let u = "https://x"; // gone\nlet c = \'/\'; /* gone */ let r = r#"a//b"#;'
        out = extractor.strip_comments(src)
        assert '"https://x"' in out
        assert "gone" not in out
        assert 'r#"a//b"#' in out
        assert len(out) == len(src)
