"""Profile advice for the validator's flags: what a trading RPC node should run with.

Each piece of advice says why and what it is expected to change (memory, CPU,
latency). Host facts (CPU count, the UDP buffer sysctls the validator's own start
test reads, mounts of the ledger and accounts paths) are read from ``--root``
(default ``/``), read-only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from agave_perf.errors import UsageError
from agave_perf.tune.flags._catalog import Release
from agave_perf.tune.flags._validate import INFO, WARNING, FlagFinding, FlagUse, advice

PROFILES = ("rpc-trading", "none")

# The validator's own start-up test (core/src/system_monitor_service.rs, INTERESTING_LIMITS
# with Recommend(..)) warns, and refuses to start unless --no-os-network-limits-test,
# when these are below the recommended values.
NETWORK_LIMITS = {
    "net.core.rmem_max": 134217728,
    "net.core.wmem_max": 134217728,
    "vm.max_map_count": 1000000,
}

# Which RPC methods each secondary index serves (rpc/src/rpc.rs: get_filtered_program_accounts
# checks AccountIndex::ProgramId, ..._by_owner SplTokenOwner, ..._by_mint SplTokenMint).
INDEX_METHODS = {
    "program-id": "getProgramAccounts (and getTokenAccountsByDelegate without a mint)",
    "spl-token-owner": "getTokenAccountsByOwner (and getProgramAccounts with an owner filter)",
    "spl-token-mint": "getTokenLargestAccounts, getTokenAccountsByDelegate with a mint "
    "(and getProgramAccounts with a mint filter)",
}
METHOD_INDEXES = {
    "getProgramAccounts": ("program-id",),
    "getTokenAccountsByOwner": ("spl-token-owner",),
    "getTokenLargestAccounts": ("spl-token-mint",),
    "getTokenAccountsByDelegate": ("spl-token-mint", "program-id"),
}


def check_methods(methods: tuple[str, ...]) -> None:
    """Refuse an RPC method name no Agave node serves, suggesting the closest one."""
    if not methods:
        return
    import difflib

    from agave_perf.bench import HTTP_METHODS  # the one list of Agave's HTTP methods
    from agave_perf.errors import UsageError

    for m in methods:
        if m not in HTTP_METHODS:
            close = difflib.get_close_matches(m, sorted(HTTP_METHODS), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UsageError(f"--rpc-method {m}: not an Agave RPC method{hint}")


# The rpc-trading workload of DESIGN.md (what `agave-perf bench` drives): no secondary index.
TRADING_METHODS = (
    "sendTransaction",
    "simulateTransaction",
    "getLatestBlockhash",
    "getAccountInfo",
    "getMultipleAccounts",
    "getSignatureStatuses",
)


@dataclass
class HostFacts:
    """What the advice needs to know about the machine, read from a root directory."""

    root: Path
    cpus: int | None = None
    sysctl: dict[str, int | None] = field(default_factory=dict)
    mounts: list[tuple[str, str]] = field(default_factory=list)  # (mount point, device)

    @classmethod
    def read(cls, root: Path) -> HostFacts:
        """Read CPU count, the network sysctls and the mount table under root."""
        facts = cls(root=root)
        online = root / "sys/devices/system/cpu/online"
        try:
            facts.cpus = _count_cpus(online.read_text().strip())
        except (OSError, ValueError):
            if root == Path("/"):
                facts.cpus = os.cpu_count()
        for key in NETWORK_LIMITS:
            path = root / "proc/sys" / key.replace(".", "/")
            try:
                facts.sysctl[key] = int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                facts.sysctl[key] = None
        try:
            for line in (root / "proc/mounts").read_text().splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    facts.mounts.append((parts[1].replace("\\040", " "), parts[0]))
        except OSError:
            pass
        return facts

    def exists(self, path: str) -> bool:
        """True when an absolute path exists on this host (below the root)."""
        from agave_perf.tune.host import resolve_in_root

        if not path.startswith("/"):
            return False
        return (self.root / resolve_in_root(self.root, path).lstrip("/")).exists()

    def device_of(self, path: str) -> str | None:
        """The device holding ``path`` by the longest mount-point prefix, or None."""
        from agave_perf.tune.host import resolve_in_root

        best: tuple[int, str] | None = None
        # Resolved inside the root: a ledger behind a symlink is on its target's device.
        p = resolve_in_root(self.root, path) if path.startswith("/") else os.path.normpath(path)
        for mnt, dev in self.mounts:
            inside = p == mnt or p.startswith(mnt.rstrip("/") + "/")
            if inside and (best is None or len(mnt) > best[0]):
                best = (len(mnt), dev)
        return best[1] if best else None


def _count_cpus(spec: str) -> int:
    """Count CPUs in a list like ``0-3,8-11``."""
    total = 0
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        total += (int(hi) - int(lo) + 1) if hi else 1
    return total


def recommend(
    uses: list[FlagUse],
    release: Release,
    host: HostFacts,
    profile: str,
    methods: tuple[str, ...] = (),
) -> list[FlagFinding]:
    """Advice for a profile and the RPC methods the bots call; empty for profile ``none``."""
    if profile == "none":
        return []
    if profile != "rpc-trading":
        raise UsageError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    by: dict[str, list[FlagUse]] = {}
    for u in uses:
        by.setdefault(u.key, []).append(u)
    has = by.__contains__
    out: list[FlagFinding] = []

    def first_line(key: str) -> int:
        return by[key][0].flag_word.line if key in by else 0

    def value(key: str) -> str | None:
        return by[key][-1].value_text if key in by else None

    def known(name: str) -> bool:
        return release.lookup(name, jito=True) is not None

    # voting
    if has("vote-account") and not has("no-voting"):
        out.append(
            FlagFinding(
                WARNING,
                "--no-voting",
                "rpc-votes",
                "this RPC node votes (--vote-account without --no-voting)",
                "add --no-voting and drop --vote-account on RPC nodes",
                first_line("vote-account"),
                {"cpu": "lower: no vote transactions to build and send", "latency": "lower"},
            )
        )
    elif not has("no-voting") and known("no-voting"):
        out.append(
            advice(
                "--no-voting",
                "rpc-no-voting",
                "voting is off only implicitly (no --vote-account)",
                "add --no-voting to make the RPC role explicit",
                0,
                {"cpu": "none (documents intent)"},
            )
        )
    # full RPC API
    if not has("full-rpc-api") and known("full-rpc-api"):
        out.append(
            FlagFinding(
                WARNING,
                "--full-rpc-api",
                "rpc-full-api",
                "without it only the minimal RPC set is served: no getAccountInfo, "
                "sendTransaction, simulateTransaction or getLatestBlockhash",
                "add --full-rpc-api",
                0,
                {"latency": "required for the trading mix"},
            )
        )
    # ledger size
    if not has("limit-ledger-size") and known("limit-ledger-size"):
        out.append(
            advice(
                "--limit-ledger-size",
                "ledger-unbounded",
                "the ledger (blockstore) grows until the disk is full",
                "add --limit-ledger-size (bare: the default shred count, about 500 GB)",
                0,
                {"disk": "bounded", "latency": "steadier (less compaction I/O late in life)"},
            )
        )
    # account indexes: keep only what the workload's methods use
    # (invalid index names are validation errors already; advise on the real ones only)
    workload = tuple(methods) if methods else TRADING_METHODS
    needed = {idx for m in workload for idx in METHOD_INDEXES.get(m, ())[:1]}
    indexes = [v for u in by.get("account-index", []) for v in u.values if v in INDEX_METHODS]
    memory = {
        "memory": "many GiB on mainnet per index (estimate); counts against the 16 GB "
        "anonymous-memory criterion",
    }
    for idx in dict.fromkeys(indexes):
        if idx not in needed:
            out.append(
                advice(
                    f"--account-index {idx}",
                    "account-index-unneeded",
                    f"the {idx} index keeps an in-memory entry for every matching account and "
                    f"serves only {INDEX_METHODS[idx]}, which the workload does not call",
                    "remove it (or name the methods the bots call with --rpc-method)",
                    first_line("account-index"),
                    memory,
                )
            )
        elif not has("account-index-include-key"):
            out.append(
                FlagFinding(
                    INFO,
                    f"--account-index {idx}",
                    "account-index-cost",
                    f"the {idx} index is needed for {INDEX_METHODS[idx]}; it covers every "
                    "matching account",
                    "restrict it with --account-index-include-key <PROGRAM_OR_MINT>",
                    first_line("account-index"),
                    memory,
                )
            )
    for idx in sorted(needed - set(indexes)):
        if known("account-index"):
            users = [m for m in workload if idx in METHOD_INDEXES.get(m, ())[:1]]
            out.append(
                advice(
                    f"--account-index {idx}",
                    "account-index-missing",
                    f"the workload calls {', '.join(users)}; without the {idx} index each call "
                    "scans all accounts",
                    f"add --account-index {idx} (restricted with --account-index-include-key)",
                    0,
                    {"latency": "index lookups instead of full scans", **memory},
                )
            )
    # RPC threads vs cores
    cpus = host.cpus
    threads = value("rpc-threads")
    if cpus and threads and threads.isdigit() and int(threads) > cpus:
        out.append(
            FlagFinding(
                WARNING,
                "--rpc-threads",
                "rpc-threads-oversubscribed",
                f"--rpc-threads {threads} is more than the {cpus} CPUs of this host",
                f"use at most {cpus}; replay and banking need cores too",
                first_line("rpc-threads"),
                {"cpu": "less contention", "latency": "lower tail latency"},
            )
        )
    elif cpus and not threads and known("rpc-threads"):
        out.append(
            FlagFinding(
                INFO,
                "--rpc-threads",
                "rpc-threads-default",
                f"RPC uses one thread per CPU ({cpus} on the audited host) by default, "
                "competing with replay",
                "measure with `agave-perf bench`; an explicit --rpc-threads caps RPC's share",
                0,
                {"cpu": "bounded RPC share", "latency": "replay keeps up under RPC load"},
            )
        )
    # network limits test
    limits_ok = all(
        (host.sysctl.get(k) or 0) >= v for k, v in NETWORK_LIMITS.items() if k in host.sysctl
    ) and all(host.sysctl.get(k) is not None for k in NETWORK_LIMITS)
    unread = [k for k in NETWORK_LIMITS if host.sysctl.get(k) is None]
    low = [
        f"{k}={host.sysctl[k]} (< {v})"
        for k, v in NETWORK_LIMITS.items()
        if host.sysctl.get(k) is not None and (host.sysctl[k] or 0) < v
    ]
    if has("no-os-network-limits-test") and low:
        out.append(
            FlagFinding(
                WARNING,
                "--no-os-network-limits-test",
                "network-limits-low",
                "the start test is skipped but the host's limits are too low: " + ", ".join(low),
                "raise them (agave-perf host apply) before skipping the test",
                first_line("no-os-network-limits-test"),
                {"latency": "UDP packet drops raise slot lag"},
            )
        )
    elif has("no-os-network-limits-test") and unread:
        out.append(
            FlagFinding(
                INFO,
                "--no-os-network-limits-test",
                "network-limits-unknown",
                f"could not read {', '.join(unread)} under {host.root}",
                "run `agave-perf host check` on the validator host",
                first_line("no-os-network-limits-test"),
            )
        )
    elif not has("no-os-network-limits-test") and limits_ok and known("no-os-network-limits-test"):
        out.append(
            FlagFinding(
                INFO,
                "--no-os-network-limits-test",
                "network-limits-ok",
                "the host's UDP buffer and map-count limits pass the validator's start test",
                "--no-os-network-limits-test may be added; it only skips that check",
                0,
            )
        )
    # accounts and ledger on separate devices
    ledger = value("ledger")
    # --accounts takes comma-separated paths, possibly several values (clap 2)
    accounts = [p for u in by.get("accounts", []) for v in u.values for p in v.split(",") if p]
    if ledger and not accounts:
        out.append(
            advice(
                "--accounts",
                "accounts-on-ledger",
                "accounts live under the ledger directory, on the same device",
                "put --accounts on its own NVMe device",
                first_line("ledger"),
                {"latency": "replay and RPC reads stop contending with ledger writes"},
            )
        )
    elif ledger and accounts and not all(host.exists(p) for p in (ledger, *accounts)):
        # the script is audited away from its node: its paths say nothing about this host
        missing = [p for p in (ledger, *accounts) if not host.exists(p)]
        out.append(
            FlagFinding(
                INFO,
                "--accounts",
                "paths-not-found",
                f"{', '.join(missing)} not found on this host, so whether ledger and "
                "accounts share a device was not checked",
                "audit on the node itself (or pass --root with its mount table and paths)",
                first_line("accounts"),
            )
        )
    elif ledger and accounts:
        dl = host.device_of(ledger)
        same = [a for a in accounts if dl is not None and host.device_of(a) == dl]
        if same:
            out.append(
                advice(
                    "--accounts",
                    "accounts-same-device",
                    f"--accounts {same[0]} and --ledger {ledger} are on one device ({dl})",
                    "move accounts to a separate NVMe device",
                    first_line("accounts"),
                    {"latency": "less I/O contention during replay and RPC reads"},
                )
            )
    # health check distance
    dist = value("health-check-slot-distance")
    if known("health-check-slot-distance") and (dist is None or (dist.isdigit() and int(dist) > 5)):
        # DefaultArgs: "150" up to 1.18, DELINQUENT_VALIDATOR_SLOT_DISTANCE (128) from 2.0
        default = release.limits.get("default_health_check_slot_distance") or 128
        current = dist or f"{default} (the default)"
        out.append(
            advice(
                "--health-check-slot-distance",
                "health-distance",
                f"getHealth stays 'ok' until the node is {current} slots behind",
                "set --health-check-slot-distance 5 so load balancers drop a lagging node "
                "at the plan's 5-slot limit",
                first_line("health-check-slot-distance"),
                {"latency": "bots stop reading stale state from a lagging node"},
            )
        )
    # transaction history
    if has("enable-rpc-transaction-history"):
        out.append(
            FlagFinding(
                INFO,
                "--enable-rpc-transaction-history",
                "tx-history-cost",
                "stores every transaction's status in the blockstore (disk and IOPS)",
                "keep it only if the bots call getTransaction/getSignaturesForAddress",
                first_line("enable-rpc-transaction-history"),
                {"disk": "much more ledger I/O", "latency": "more compaction"},
            )
        )
    return out
