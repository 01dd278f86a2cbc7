"""``agave-perf build audit``: the compiler profile of an Agave checkout, with advice.

Reads what cargo reads — ``Cargo.toml`` profiles, ``.cargo/config.toml``,
``rust-toolchain(.toml)``, RUSTFLAGS and ``CARGO_PROFILE_*`` in the environment —
and compares it with what a low-latency RPC node wants. Every finding carries
the observed value, the recommended one, the reason and the expected effect. The
recommended settings are expressed as environment variables, so ``build run``
can apply them without editing a file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agave_perf.errors import UsageError
from agave_perf.status import Status
from agave_perf.tune.build import cpu as cpu_mod
from agave_perf.tune.build._cfg import effective_rustflags, target_cpu, without_target_cpu

PROFILE_KEYS = ("opt-level", "lto", "codegen-units", "panic", "debug", "strip", "incremental")
# Cargo's defaults for the release profile.
RELEASE_DEFAULTS: dict[str, Any] = {
    "opt-level": 3,
    "lto": False,
    "codegen-units": 16,
    "panic": "unwind",
    "debug": False,
}
JEMALLOC_CRATES = frozenset({"tikv-jemallocator", "jemallocator"})


@dataclass(frozen=True)
class BuildFinding:
    """One audited build setting: what is, what should be, why, and what it brings.

    Its status is one of the shared vocabulary (:class:`agave_perf.status.Status`): ``ok``,
    ``note`` for advice to weigh (a faster but costlier setting) and for information
    (what the build will target), ``warn`` for a setting that costs performance.
    """

    id: str
    status: Status
    observed: str
    recommended: str
    reason: str
    effect: str

    def to_json(self) -> dict[str, str]:
        """Return the finding as plain JSON data."""
        return dict(self.__dict__, status=self.status.value)


@dataclass(frozen=True)
class Toolchain:
    """The Rust toolchain installed here and the one the checkout asks for."""

    rustc: str
    version: str
    host: str
    pinned: str
    pinned_file: str
    rust_version: str
    installed: tuple[str, ...]


@dataclass
class BuildAudit:
    """The audit of one checkout."""

    path: Path
    findings: list[BuildFinding]
    toolchain: Toolchain
    rustflags: list[str]
    rustflags_source: str
    host_level: int
    fleet_level: int | None
    fleet_sources: list[str]
    recommended_env: dict[str, str] = field(default_factory=dict)

    def finding(self, id_: str) -> BuildFinding:
        """Return the finding with this id."""
        return next(f for f in self.findings if f.id == id_)

    def to_json(self) -> dict[str, Any]:
        """Return the audit as plain JSON data."""
        return {
            "path": str(self.path),
            "findings": [f.to_json() for f in self.findings],
            "toolchain": dict(self.toolchain.__dict__, installed=list(self.toolchain.installed)),
            "rustflags": self.rustflags,
            "rustflags_source": self.rustflags_source,
            "cpu": {
                "host_level": self.host_level,
                "fleet_level": self.fleet_level,
                "fleet_sources": self.fleet_sources,
            },
            "recommended_env": self.recommended_env,
        }

    def __rich__(self) -> RenderableType:
        table = Table(title=Text(f"build profile of {self.path}"), expand=False)
        for col in ("setting", "status", "observed", "recommended", "why / expected effect"):
            table.add_column(col, overflow="fold")
        style = {Status.OK: "green", Status.NOTE: "yellow", Status.WARN: "red", Status.FAIL: "red"}
        for f in self.findings:
            # Text cells, not markup: values like [profile.release] must print as they are.
            table.add_row(
                Text(f.id),
                Text(f.status.value, style=style[f.status]),
                Text(f.observed),
                Text(f.recommended),
                Text(f"{f.reason} {f.effect}".strip()),
            )
        env = " ".join(f"{k}={v!r}" for k, v in self.recommended_env.items())
        return Group(table, Text(f"agave-perf build run applies: {env}"))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path}: not valid TOML: {err}") from None


def _cargo_config(root: Path) -> dict[str, Any]:
    for name in ("config.toml", "config"):
        path = root / ".cargo" / name
        if path.is_file():
            return _read_toml(path)
    return {}


def _profile_env(env: Mapping[str, str], profile: str) -> dict[str, Any]:
    prefix = f"CARGO_PROFILE_{profile.upper().replace('-', '_')}_"
    out: dict[str, Any] = {}
    for key in PROFILE_KEYS:
        value = env.get(prefix + key.upper().replace("-", "_"))
        if value is not None:
            out[key] = int(value) if value.isdigit() else value
    return out


def release_profile(
    manifest: Mapping[str, Any], config: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Return the effective release profile and, per key, where its value came from."""
    values: dict[str, Any] = dict(RELEASE_DEFAULTS)
    origin = dict.fromkeys(values, "cargo default")
    layers = (
        ("Cargo.toml", (manifest.get("profile") or {}).get("release") or {}),
        (".cargo/config", (config.get("profile") or {}).get("release") or {}),
        ("environment", _profile_env(env, "release")),
    )
    for name, layer in layers:
        for key, value in layer.items():
            values[key] = value
            origin[key] = name
    return values, origin


def _show(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _lto_kind(value: Any) -> str:
    # Cargo: false = thin-local (within a crate), "thin" = thin across crates,
    # true/"fat" = fat, "off" = none.
    # From the environment the booleans arrive as text.
    if value is True or value in ("fat", "true"):
        return "fat"
    if value is False or value == "false":
        return "thin-local"
    return str(value)


def _run(argv: list[str]) -> str | None:
    # Run from a neutral directory: inside the checkout, rustup would switch to (and may
    # try to download) the pinned toolchain, which is what we want to compare against.
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tempfile.gettempdir(),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _pinned(root: Path) -> tuple[str, str]:
    for name in ("rust-toolchain.toml", "rust-toolchain"):
        path = root / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8").strip()
        try:
            channel = (tomllib.loads(text).get("toolchain") or {}).get("channel", "")
        except tomllib.TOMLDecodeError:
            channel = text.splitlines()[0].strip() if text else ""
        return str(channel), name
    return "", ""


def toolchain(root: Path, manifest: Mapping[str, Any]) -> Toolchain:
    """Return the installed and pinned toolchain facts for a checkout."""
    verbose = _run(["rustc", "-vV"]) or ""
    info = dict(line.split(": ", 1) for line in verbose.splitlines()[1:] if ": " in line)
    pinned, pinned_file = _pinned(root)
    ws = (manifest.get("workspace") or {}).get("package") or {}
    pkg = manifest.get("package") or {}
    rust_version = str(ws.get("rust-version") or pkg.get("rust-version") or "")
    installed: tuple[str, ...] = ()
    if shutil.which("rustup"):
        listing = _run(["rustup", "toolchain", "list"]) or ""
        installed = tuple(line.split()[0] for line in listing.splitlines() if line.strip())
    return Toolchain(
        rustc=verbose.splitlines()[0] if verbose else "",
        version=info.get("release", ""),
        host=info.get("host", ""),
        pinned=pinned,
        pinned_file=pinned_file,
        rust_version=rust_version,
        installed=installed,
    )


def _version_tuple(text: str) -> tuple[int, ...]:
    nums = []
    for part in text.split("-")[0].split("."):
        if not part.isdigit():
            break
        nums.append(int(part))
    return tuple(nums)


def _toolchain_finding(tc: Toolchain) -> BuildFinding:
    if not tc.version:
        return BuildFinding(
            "toolchain",
            Status.WARN,
            "rustc not found",
            tc.pinned or tc.rust_version or "a Rust toolchain",
            "nothing can be built without rustc.",
            "",
        )
    observed = f"rustc {tc.version}"
    if tc.pinned:
        have = tc.version == tc.pinned or any(t.startswith(tc.pinned + "-") for t in tc.installed)
        return BuildFinding(
            "toolchain",
            Status.OK if have else Status.WARN,
            observed + (f"; installed: {', '.join(tc.installed)}" if tc.installed else ""),
            f"{tc.pinned} ({tc.pinned_file})",
            "the checkout pins this toolchain; Agave CI tests with it.",
            "reproducible builds"
            if have
            else f"install it first (rustup toolchain install {tc.pinned}); a different compiler "
            "may fail to build or optimise differently.",
        )
    if tc.rust_version and _version_tuple(tc.version) < _version_tuple(tc.rust_version):
        return BuildFinding(
            "toolchain",
            Status.WARN,
            observed,
            f">= {tc.rust_version} (rust-version)",
            "the workspace declares a newer minimum Rust version.",
            "the build fails until the toolchain is upgraded.",
        )
    return BuildFinding(
        "toolchain",
        Status.OK,
        observed,
        f">= {tc.rust_version}" if tc.rust_version else observed,
        "no toolchain pin; the installed rustc meets the workspace rust-version.",
        "",
    )


def _dep_names(table: Mapping[str, Any], workspace_deps: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for key, spec in table.items():
        package = key
        if isinstance(spec, dict):
            if spec.get("workspace"):
                ws_spec = workspace_deps.get(key)
                if isinstance(ws_spec, dict):
                    package = str(ws_spec.get("package", key))
            else:
                package = str(spec.get("package", key))
        names.add(package)
    return names


def jemalloc_in(root: Path, manifest: Mapping[str, Any]) -> str | None:
    """Return where the validator (or the root package) pulls in tikv-jemallocator, if it does."""
    ws_deps = (manifest.get("workspace") or {}).get("dependencies") or {}
    candidates = [root / "validator" / "Cargo.toml", root / "Cargo.toml"]
    for path in candidates:
        if not path.is_file():
            continue
        data = manifest if path == root / "Cargo.toml" else _read_toml(path)
        tables: list[tuple[str, Mapping[str, Any]]] = [
            ("dependencies", data.get("dependencies") or {})
        ]
        for cfg, tdata in (data.get("target") or {}).items():
            if isinstance(tdata, dict):
                tables.append((f"target.{cfg}.dependencies", tdata.get("dependencies") or {}))
        for where, table in tables:
            if _dep_names(table, ws_deps) & JEMALLOC_CRATES:
                return f"{path.relative_to(root)} [{where}]"
    return None


def _profiling_profile(manifest: Mapping[str, Any]) -> str | None:
    for name, prof in (manifest.get("profile") or {}).items():
        if not isinstance(prof, dict):
            continue
        if prof.get("inherits") == "release" and prof.get("debug") not in (None, False, 0, "none"):
            return str(name)
    return None


def audit(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cpuinfo: Path = Path("/proc/cpuinfo"),
    fleet: list[Path] | None = None,
) -> BuildAudit:
    """Audit the build profile of the cargo workspace at ``path``."""
    root = path.resolve()
    if not (root / "Cargo.toml").is_file():
        raise UsageError(f"{path}: no Cargo.toml (not a cargo workspace)")
    env = dict(os.environ if env is None else env)
    manifest = _read_toml(root / "Cargo.toml")
    config = _cargo_config(root)
    tc = toolchain(root, manifest)
    findings: list[BuildFinding] = []
    prof, origin = release_profile(manifest, config, env)

    opt = prof["opt-level"]
    findings.append(
        BuildFinding(
            "opt-level",
            Status.OK if str(opt) == "3" else Status.WARN,
            f"{_show(opt)} ({origin['opt-level']})",
            "3",
            "full optimisation is what Agave ships and benchmarks.",
            "" if str(opt) == "3" else "a lower level costs throughput on every hot path.",
        )
    )
    lto = _lto_kind(prof["lto"])
    findings.append(
        BuildFinding(
            "lto",
            Status.OK if lto == "fat" else Status.NOTE,
            f"{lto} ({origin['lto']})",
            "fat (CARGO_PROFILE_RELEASE_LTO=fat)",
            "fat LTO optimises across all crates of the validator, as the workspace's "
            "release-with-lto profile does.",
            "a few percent on CPU-bound replay and RPC paths (estimate; confirm with bench); "
            "longer link time.",
        )
    )
    cgu = prof["codegen-units"]
    findings.append(
        BuildFinding(
            "codegen-units",
            Status.OK if str(cgu) == "1" else Status.NOTE,
            f"{_show(cgu)} ({origin['codegen-units']})",
            "1 (CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1)",
            "one unit per crate lets LLVM inline and optimise across the whole crate.",
            "a few percent on CPU-bound paths (estimate); slower, less parallel compile.",
        )
    )
    panic = str(prof["panic"])
    findings.append(
        BuildFinding(
            "panic",
            Status.OK if panic == "unwind" else Status.WARN,
            f"{panic} ({origin['panic']})",
            "unwind",
            "Phase 0 changes no behaviour; panic=abort changes how panics end threads and "
            "what catch_unwind and #[should_panic] tests see.",
            "" if panic == "unwind" else "revert to unwind unless the change is gated and tested.",
        )
    )
    profiling = _profiling_profile(manifest)
    findings.append(
        BuildFinding(
            "debug-info",
            Status.OK if profiling else Status.NOTE,
            f"release debug={_show(prof['debug'])}; profiling profile: {profiling or 'none'}",
            profiling or "a release-with-debug profile (inherits release, debug = true)",
            "perf and flamegraphs need symbols from a binary built like the release one.",
            "no run-time cost in the release binary; makes Phase 2 hot spots measurable.",
        )
    )

    flags, flags_source = effective_rustflags(config, env, tc.host or _guess_triple())
    observed_cpu = target_cpu(flags)
    host_info: cpu_mod.CpuInfo | None
    try:
        host_info = cpu_mod.read_cpuinfo(cpuinfo)
    except UsageError:
        host_info = None
    fleet_infos = [cpu_mod.read_cpuinfo(p) for p in fleet or []]
    host_level = host_info.level if host_info else 0
    fleet_level: int | None = None
    if fleet_infos:
        fleet_level = cpu_mod.level_of(cpu_mod.fleet_flags(fleet_infos))
    level = fleet_level if fleet_level is not None else host_level
    recommended_cpu = f"x86-64-v{level}" if level else None
    findings.append(
        _cpu_finding(observed_cpu, flags_source, host_level, fleet_level, recommended_cpu)
    )

    where = jemalloc_in(root, manifest)
    findings.append(
        BuildFinding(
            "allocator",
            Status.OK if where else Status.WARN,
            f"tikv-jemallocator in {where}" if where else "no jemalloc dependency found",
            "tikv-jemallocator as the validator's global allocator",
            "Agave's validator uses jemalloc on Linux; the system allocator fragments "
            "under validator load.",
            "" if where else "expect higher memory use and slower allocation-heavy paths.",
        )
    )
    findings.append(_toolchain_finding(tc))

    rec_env = {
        "CARGO_PROFILE_RELEASE_LTO": "fat",
        "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "1",
    }
    base_flags = without_target_cpu(flags)
    if recommended_cpu:
        base_flags += ["-C", f"target-cpu={recommended_cpu}"]
    rec_env["RUSTFLAGS"] = " ".join(base_flags)
    return BuildAudit(
        path=root,
        findings=findings,
        toolchain=tc,
        rustflags=flags,
        rustflags_source=flags_source,
        host_level=host_level,
        fleet_level=fleet_level,
        fleet_sources=[i.source for i in fleet_infos],
        recommended_env=rec_env,
    )


def _guess_triple() -> str:
    machine = os.uname().machine
    return f"{machine}-unknown-linux-gnu"


def rustflags_with(root: Path, extra: list[str], env: Mapping[str, str] | None = None) -> str:
    """Return RUSTFLAGS that keep what cargo would use for the checkout and add ``extra``.

    Setting RUSTFLAGS makes cargo ignore the config's rustflags (Agave's ``+popcnt``),
    so they are carried over; a ``-C target-cpu`` in ``extra`` replaces any earlier one.
    """
    env = dict(os.environ if env is None else env)
    triple = toolchain_host() or _guess_triple()
    flags, _ = effective_rustflags(_cargo_config(root.resolve()), env, triple)
    if target_cpu(extra):
        flags = without_target_cpu(flags)
    return " ".join([*flags, *extra])


def toolchain_host() -> str:
    """Return the host triple of the installed rustc ('' without rustc)."""
    for line in (_run(["rustc", "-vV"]) or "").splitlines():
        if line.startswith("host: "):
            return line.removeprefix("host: ").strip()
    return ""


def host_target_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """Return ``x86-64-vN`` for this host's CPU level, or '' when it is not x86-64."""
    try:
        level = cpu_mod.read_cpuinfo(cpuinfo).level
    except UsageError:
        return ""
    return f"x86-64-v{level}" if level else ""


def _cpu_finding(
    observed: str | None,
    source: str,
    host_level: int,
    fleet_level: int | None,
    recommended: str | None,
) -> BuildFinding:
    shown = f"{observed or 'none (generic x86-64)'} (rustflags from {source})"
    if recommended is None:
        return BuildFinding(
            "target-cpu",
            Status.NOTE,
            shown,
            "unchanged",
            "no x86-64 CPU flags found (not an x86 host or no cpuinfo).",
            "",
        )
    scope = (
        f"the fleet's lowest common level is v{fleet_level}"
        if fleet_level is not None
        else f"this host supports v{host_level}; pass --fleet-cpuinfo to check the fleet"
    )
    if observed == "native":
        risky = fleet_level is not None and fleet_level < host_level
        return BuildFinding(
            "target-cpu",
            Status.WARN if risky else Status.NOTE,
            shown,
            recommended,
            f"native targets only the build host; {scope}.",
            "the binary may die with SIGILL on older fleet hosts."
            if risky
            else "a level target keeps the speed-up and runs on every host of that level.",
        )
    if observed == recommended:
        return BuildFinding("target-cpu", Status.OK, shown, recommended, scope + ".", "")
    return BuildFinding(
        "target-cpu",
        Status.NOTE,
        shown,
        recommended,
        f"{scope}; the generic target leaves AVX2/BMI2 unused.",
        "faster hashing, signature verification and serialization (estimate: a few percent).",
    )
