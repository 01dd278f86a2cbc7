"""build audit on Agave-shaped checkouts: profiles, config, env, CPU, allocator, toolchain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agave_perf.status import Status
from agave_perf.tune.build._cfg import effective_rustflags, eval_cfg, host_cfg, target_cpu
from agave_perf.tune.build.audit import audit
from tests.tune.build.test_cpu import V3, V4, cpuinfo

WORKSPACE = """\
[workspace]
members = ["validator"]
resolver = "2"

[workspace.package]
rust-version = "1.1.0"

[workspace.dependencies]
jemallocator = { package = "tikv-jemallocator", version = "0.6.0" }

[profile.release]
lto = "thin"
split-debuginfo = "unpacked"

[profile.release-with-debug]
inherits = "release"
debug = true

[profile.release-with-lto]
inherits = "release"
lto = "fat"
codegen-units = 1
"""

VALIDATOR = """\
[package]
name = "agave-validator"
version = "0.1.0"

[target.'cfg(not(any(target_env = "msvc", target_os = "freebsd")))'.dependencies]
jemallocator = { workspace = true }
"""

CONFIG = """\
[target.'cfg(any(target_arch="x86", target_arch="x86_64"))']
rustflags = ["-C", "target-feature=+popcnt"]
"""


@pytest.fixture
def agave(tmp_path: Path) -> Path:
    root = tmp_path / "agave"
    (root / "validator").mkdir(parents=True)
    (root / ".cargo").mkdir()
    (root / "Cargo.toml").write_text(WORKSPACE)
    (root / "validator" / "Cargo.toml").write_text(VALIDATOR)
    (root / ".cargo" / "config.toml").write_text(CONFIG)
    return root


@pytest.fixture
def v4_host(tmp_path: Path) -> Path:
    path = tmp_path / "cpuinfo-v4"
    path.write_text(cpuinfo(V4))
    return path


class TestProfiles:
    def test_agave_defaults(self, agave: Path, v4_host: Path) -> None:
        """Thin LTO and 16 codegen units are notes (advice to weigh); jemalloc and the debug
        profile are ok."""
        report = audit(agave, env={}, cpuinfo=v4_host)
        assert report.finding("lto").status == Status.NOTE
        assert report.finding("lto").observed.startswith("thin (Cargo.toml)")
        assert report.finding("codegen-units").observed.startswith("16 (cargo default)")
        assert report.finding("opt-level").status == "ok"
        assert report.finding("panic").status == "ok"
        assert report.finding("debug-info").observed.endswith("release-with-debug")
        allocator = report.finding("allocator")
        assert allocator.status == "ok"
        assert "validator/Cargo.toml" in allocator.observed

    def test_statuses_are_the_shared_vocabulary(self, agave: Path, v4_host: Path) -> None:
        """Every finding's status is a Status, and the JSON carries its word (no 'advice')."""
        report = audit(agave, env={}, cpuinfo=v4_host)
        assert all(isinstance(f.status, Status) for f in report.findings)
        words = {f["status"] for f in json.loads(json.dumps(report.to_json()))["findings"]}
        assert words <= {s.value for s in Status}
        assert "note" in words

    def test_environment_overrides_manifest(self, agave: Path, v4_host: Path) -> None:
        """CARGO_PROFILE_RELEASE_* in the environment win over Cargo.toml, as in cargo."""
        env = {"CARGO_PROFILE_RELEASE_LTO": "fat", "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "1"}
        report = audit(agave, env=env, cpuinfo=v4_host)
        assert report.finding("lto").status == "ok"
        assert report.finding("lto").observed == "fat (environment)"
        assert report.finding("codegen-units").status == "ok"

    @pytest.mark.parametrize(
        ("value", "kind"), [("true", "fat"), ("false", "thin-local"), ("off", "off")]
    )
    def test_lto_values_from_environment(
        self, agave: Path, v4_host: Path, value: str, kind: str
    ) -> None:
        """LTO given as text in the environment is read with cargo's meaning."""
        env = {"CARGO_PROFILE_RELEASE_LTO": value}
        assert audit(agave, env=env, cpuinfo=v4_host).finding("lto").observed == (
            f"{kind} (environment)"
        )

    def test_panic_abort_and_no_jemalloc_are_warnings(self, agave: Path, v4_host: Path) -> None:
        """panic=abort changes behaviour and a missing jemalloc costs memory: both warn."""
        (agave / "Cargo.toml").write_text(WORKSPACE.replace('lto = "thin"', 'panic = "abort"'))
        (agave / "validator" / "Cargo.toml").write_text(VALIDATOR.split("[target")[0])
        report = audit(agave, env={}, cpuinfo=v4_host)
        assert report.finding("panic").status == "warn"
        assert report.finding("allocator").status == "warn"

    def test_not_a_workspace(self, tmp_path: Path) -> None:
        """A directory without Cargo.toml is a usage error naming it."""
        from agave_perf.errors import UsageError

        with pytest.raises(UsageError, match=r"no Cargo\.toml"):
            audit(tmp_path, env={})


class TestTargetCpu:
    def test_recommends_fleet_level_and_keeps_config_flags(
        self, agave: Path, v4_host: Path, tmp_path: Path
    ) -> None:
        """With a v3 host in the fleet the advice is x86-64-v3, and +popcnt from config stays."""
        old = tmp_path / "old-host"
        old.write_text(cpuinfo(V3))
        report = audit(agave, env={}, cpuinfo=v4_host, fleet=[v4_host, old])
        assert (report.host_level, report.fleet_level) == (4, 3)
        assert report.finding("target-cpu").recommended == "x86-64-v3"
        flags = report.recommended_env["RUSTFLAGS"]
        assert flags == "-C target-feature=+popcnt -C target-cpu=x86-64-v3"

    def test_native_with_older_fleet_warns(
        self, agave: Path, v4_host: Path, tmp_path: Path
    ) -> None:
        """target-cpu=native on a v4 build host with a v3 fleet host is flagged as a SIGILL risk."""
        old = tmp_path / "old-host"
        old.write_text(cpuinfo(V3))
        env = {"RUSTFLAGS": "-C target-cpu=native"}
        report = audit(agave, env=env, cpuinfo=v4_host, fleet=[old])
        finding = report.finding("target-cpu")
        assert finding.status == "warn"
        assert "SIGILL" in finding.effect
        # RUSTFLAGS replaces the config's rustflags in cargo, so +popcnt is gone here.
        assert report.recommended_env["RUSTFLAGS"] == "-C target-cpu=x86-64-v3"


class TestToolchain:
    def test_pinned_toolchain_not_installed_warns(self, agave: Path, v4_host: Path) -> None:
        """A pin to a toolchain that is not installed is a warning naming the install command."""
        (agave / "rust-toolchain.toml").write_text('[toolchain]\nchannel = "1.2.3"\n')
        finding = audit(agave, env={}, cpuinfo=v4_host).finding("toolchain")
        assert finding.status == "warn"
        assert "1.2.3" in finding.recommended
        assert "rustup toolchain install 1.2.3" in finding.effect

    def test_rust_version_met(self, agave: Path, v4_host: Path) -> None:
        """Without a pin, an installed rustc above rust-version is ok."""
        finding = audit(agave, env={}, cpuinfo=v4_host).finding("toolchain")
        assert finding.status == "ok"
        assert finding.observed.startswith("rustc ")


class TestCargoRules:
    def test_cfg_expressions(self) -> None:
        """cfg() keys evaluate any/all/not and key = value as cargo does for the host."""
        v = host_cfg("x86_64-unknown-linux-gnu")
        assert eval_cfg('cfg(any(target_arch="x86", target_arch="x86_64"))', v)
        assert eval_cfg('cfg(not(any(target_env = "msvc", target_os = "freebsd")))', v)
        assert not eval_cfg("cfg(windows)", v)
        assert eval_cfg('cfg(all(unix, target_pointer_width = "64"))', v)

    def test_rustflags_precedence(self) -> None:
        """CARGO_ENCODED_RUSTFLAGS beats RUSTFLAGS beats target rustflags beats build.rustflags."""
        config = {
            "build": {"rustflags": ["-C", "opt-level=2"]},
            "target": {"x86_64-unknown-linux-gnu": {"rustflags": "-C target-cpu=native"}},
        }
        triple = "x86_64-unknown-linux-gnu"
        assert effective_rustflags(config, {}, triple)[0] == ["-C", "target-cpu=native"]
        assert effective_rustflags({"build": config["build"]}, {}, triple)[0] == [
            "-C",
            "opt-level=2",
        ]
        assert effective_rustflags(config, {"RUSTFLAGS": ""}, triple) == ([], "RUSTFLAGS")
        enc = {"CARGO_ENCODED_RUSTFLAGS": "-C\x1ftarget-cpu=x86-64-v2", "RUSTFLAGS": "-g"}
        flags, source = effective_rustflags(config, enc, triple)
        assert (target_cpu(flags), source) == ("x86-64-v2", "CARGO_ENCODED_RUSTFLAGS")


class TestCli:
    def test_json_audit(self, agave: Path, v4_host: Path) -> None:
        """build audit --json prints one document with findings and the env build run applies."""
        r = subprocess.run(
            [sys.executable, "-m", "agave_perf", "build", "audit", str(agave), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        ids = [f["id"] for f in doc["findings"]]
        assert ids == [
            "opt-level",
            "lto",
            "codegen-units",
            "panic",
            "debug-info",
            "target-cpu",
            "allocator",
            "toolchain",
        ]
        assert doc["recommended_env"]["CARGO_PROFILE_RELEASE_LTO"] == "fat"

    def test_table_prints_toml_brackets_verbatim(self, agave: Path, v4_host: Path) -> None:
        """The human table shows values like [profile...] literally, not as rich markup."""
        r = subprocess.run(
            [sys.executable, "-m", "agave_perf", "build", "audit", str(agave)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert r.returncode == 0, r.stderr
        assert "#[should_panic]" in r.stdout
