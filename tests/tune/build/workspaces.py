"""Tiny dependency-free cargo workspaces in real git repositories, for build and plan tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

MAIN_RS = """\
pub fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn main() {
    println!("{}", add(40, 2));
}

#[cfg(test)]
mod tests {
    #[test]
    fn adds() {
        assert_eq!(super::add(2, 2), 4);
    }
}
"""

FAILING_TEST_RS = MAIN_RS.replace(
    "assert_eq!(super::add(2, 2), 4)", "assert_eq!(super::add(2, 2), 5)"
)
BROKEN_RS = MAIN_RS.replace("a + b", "a + undefined_name")

# A build script that presses Ctrl-C on agave-perf (its grandparent: agave-perf -> cargo ->
# build script), then keeps cargo busy until cargo is gone.
INTERRUPTING_BUILD_RS = """\
use std::os::unix::process::parent_id;
use std::process::Command;
use std::{fs, thread, time::Duration};

fn main() {
    let cargo = parent_id();
    let stat = fs::read_to_string(format!("/proc/{cargo}/stat")).unwrap();
    let caller = stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().to_string();
    Command::new("kill").args(["-INT", &caller]).status().unwrap();
    for _ in 0..600 {
        if parent_id() != cargo {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
"""

CARGO_TOML = """\
[package]
name = "perfdemo"
version = "0.1.0"
edition = "2021"

[features]
perf-fast = []
perf-other = []
"""


def need_tools() -> None:
    """Skip when cargo or git is missing (they are real dependencies of these tests)."""
    for tool in ("cargo", "git"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} on PATH")


def git(repo: Path, *args: str) -> str:
    """Run git in a repo as a fixed test identity; fail the test on error."""
    proc = subprocess.run(
        ["git", "-c", "user.email=test@example.com", "-c", "user.name=test", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def make_workspace(root: Path, variant: str = "passing") -> Path:
    """Create a committed cargo package: 'passing', 'failing-test' or 'broken' (no compile)."""
    need_tools()
    source = {"passing": MAIN_RS, "failing-test": FAILING_TEST_RS, "broken": BROKEN_RS}[variant]
    (root / "src").mkdir(parents=True)
    (root / "Cargo.toml").write_text(CARGO_TOML)
    (root / "src" / "main.rs").write_text(source)
    (root / ".gitignore").write_text("target/\n")
    # A committed lockfile, as Agave has: cargo would otherwise create it and dirty the tree.
    subprocess.run(["cargo", "generate-lockfile", "--offline", "-q"], cwd=root, check=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", f"{variant} workspace")
    return root


def commit_source(root: Path, source: str, message: str) -> str:
    """Replace src/main.rs, commit it, and return the new HEAD."""
    (root / "src" / "main.rs").write_text(source)
    git(root, "commit", "-q", "-am", message)
    return git(root, "rev-parse", "HEAD")
