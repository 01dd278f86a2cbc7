#!/usr/bin/env python3
"""Extract agave-validator / solana-validator flag lists from a git mirror of the sources.

Dev tool, not shipped: it reads the clap v2 builder code of the validator at given
refs (with ``git show``) and writes one JSON file per release line into
``src/agave_perf/data/flags/``. Usage::

    python scripts/extract_flags.py /work/.mirror/jito-foundation+jito-solana/repo
    python scripts/extract_flags.py <mirror> --verify   # cross-check the shipped files
    python scripts/extract_flags.py <mirror> --older    # flags of 1.0-1.14 (before-1.16.json)

The mirror used is jito-foundation/jito-solana: every Jito tag ``vX.Y.Z-jito`` is
the upstream release (solana-labs/solana for 1.x, anza-xyz/agave from 2.0) with
Jito's patch commits on top. The upstream list is read at the parent of the first
"Jito Patch" commit (the upstream release commit); the Jito list at the tag, and
``jito_flags`` holds the flags only the Jito build has.

What is read: ``validator/src/cli.rs`` (functions ``app`` and
``deprecated_arguments``; subcommands and ``test_app`` are skipped),
``validator/src/cli/thread_args.rs`` (``impl ThreadArg`` blocks used by
``thread_args()``), ``validator/src/commands/run/args.rs`` and
``validator/src/commands/run/args/*.rs`` (test modules skipped). Names of
constants used as flag names are resolved with ``git grep`` at the same commit.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent.parent / "src" / "agave_perf" / "data" / "flags"

# release line -> (binary, jito tag whose upstream parent is read, upstream repository)
RELEASES: dict[str, tuple[str, str, str]] = {
    "1.16": ("solana-validator", "v1.16.26-jito", "solana-labs/solana"),
    "1.17": ("solana-validator", "v1.17.34-jito", "solana-labs/solana"),
    "1.18": ("solana-validator", "v1.18.26-jito", "anza-xyz/agave"),
    "2.0": ("agave-validator", "v2.0.24-jito", "anza-xyz/agave"),
    "2.1": ("agave-validator", "v2.1.21-jito", "anza-xyz/agave"),
    "2.2": ("agave-validator", "v2.2.20-jito", "anza-xyz/agave"),
    "2.3": ("agave-validator", "v2.3.13-jito", "anza-xyz/agave"),
    "3.0": ("agave-validator", "v3.0.14-jito", "anza-xyz/agave"),
    "3.1": ("agave-validator", "v3.1.14-jito", "anza-xyz/agave"),
    "4.0": ("agave-validator", "v4.0.3-jito", "anza-xyz/agave"),
    "4.1": ("agave-validator", "v4.1.2-jito", "anza-xyz/agave"),
    "4.2": ("agave-validator", "v4.2.1-jito", "anza-xyz/agave"),
    "master": ("agave-validator", "HEAD", "anza-xyz/agave"),
}

MIRROR_REPO = "jito-foundation/jito-solana"


def git(mirror: Path, *args: str) -> str:
    """Run git in the mirror and return stdout."""
    return subprocess.run(
        ["git", "-C", str(mirror), *args], check=True, capture_output=True, text=True
    ).stdout


def try_show(mirror: Path, ref: str, path: str) -> str | None:
    """Return a file at a ref, or None when it does not exist there."""
    r = subprocess.run(
        ["git", "-C", str(mirror), "show", f"{ref}:{path}"], capture_output=True, text=True
    )
    return r.stdout if r.returncode == 0 else None


# ---------------------------------------------------------------- Rust lexing helpers


def _skip_string(text: str, i: int) -> int:
    """Return the index after the string/char literal starting at i (or i if none)."""
    c = text[i]
    if c == "r" and i + 1 < len(text) and text[i + 1] in '#"':
        j = i + 1
        hashes = 0
        while j < len(text) and text[j] == "#":
            hashes += 1
            j += 1
        if j < len(text) and text[j] == '"':
            end = text.find('"' + "#" * hashes, j + 1)
            return end + 1 + hashes
        return i
    if c == '"':
        j = i + 1
        while j < len(text):
            if text[j] == "\\":
                j += 2
                continue
            if text[j] == '"':
                return j + 1
            j += 1
        return j
    if c == "'":
        # char literal 'x' or '\n'; otherwise a lifetime like 'a
        if text.startswith("\\", i + 1):
            end = text.find("'", i + 2)
            return end + 1
        if i + 2 < len(text) and text[i + 2] == "'":
            return i + 3
    return i


def strip_comments(text: str) -> str:
    """Blank out // and /* */ comments, keeping string literals and offsets intact."""
    out = list(text)
    i = 0
    n = len(text)
    while i < n:
        if text[i] in "\"'r" and (text[i] != "r" or (i == 0 or not text[i - 1].isalnum())):
            j = _skip_string(text, i)
            if j > i:
                i = j
                continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            for k in range(i, end):
                out[k] = " "
            i = end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            for k in range(i, end):
                if out[k] != "\n":
                    out[k] = " "
            i = end
            continue
        i += 1
    return "".join(out)


def match_close(text: str, i: int) -> int:
    """Given text[i] is an opening bracket, return the index of its closing bracket."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[text[i]]]
    j = i + 1
    while j < len(text):
        c = text[j]
        if c in "\"'r" and (c != "r" or not text[j - 1].isalnum()):
            k = _skip_string(text, j)
            if k > j:
                j = k
                continue
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if c != stack[-1]:
                raise ValueError(f"unbalanced at {j}: {text[max(0, j - 80) : j + 20]!r}")
            stack.pop()
            if not stack:
                return j
        j += 1
    raise ValueError("unterminated bracket")


def fn_body(text: str, name: str) -> str | None:
    """Return the body of the function ``name`` (between its braces), or None."""
    m = re.search(rf"\bfn\s+{re.escape(name)}\b", text)
    if not m:
        return None
    start = text.index("{", m.end())
    return text[start + 1 : match_close(text, start)]


def remove_calls(text: str, method: str) -> str:
    """Remove every ``.method(...)`` call (balanced) from text."""
    while True:
        m = re.search(rf"\.\s*{method}\s*\(", text)
        if not m:
            return text
        open_i = m.end() - 1
        text = text[: m.start()] + text[match_close(text, open_i) + 1 :]


def drop_tests(text: str) -> str:
    """Cut a trailing ``#[cfg(test)] mod tests`` module."""
    m = re.search(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+", text)
    return text[: m.start()] if m else text


_STR_RE = re.compile(r'r#*"|"')


def string_literals(expr: str) -> list[str]:
    """Return the decoded string literals in an expression, in order."""
    out = []
    i = 0
    while i < len(expr):
        c = expr[i]
        if c in '"r' and (c != "r" or i == 0 or not expr[i - 1].isalnum()):
            j = _skip_string(expr, i)
            if j > i:
                raw = expr[i:j]
                if raw.startswith("r"):
                    out.append(raw.lstrip("r").strip("#")[1:-1])
                else:
                    body = raw[1:-1]
                    body = re.sub(r"\\\n\s*", "", body)  # Rust line continuation
                    body = body.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                    out.append(body)
                i = j
                continue
        i += 1
    return out


# ---------------------------------------------------------------- clap Arg chains


@dataclass
class RawArg:
    """One clap Arg builder chain as read from the source."""

    name_expr: str
    calls: list[tuple[str, str]] = field(default_factory=list)
    end: int = 0


def parse_chains(text: str) -> list[RawArg]:
    """Find every ``Arg::with_name(..)`` / ``Arg::new(..)`` chain in text."""
    found = []
    for m in re.finditer(r"\bArg::(?:with_name|new)\s*\(", text):
        open_i = m.end() - 1
        close = match_close(text, open_i)
        arg = RawArg(name_expr=text[open_i + 1 : close].strip())
        j = close + 1
        while True:
            k = j
            while k < len(text) and text[k].isspace():
                k += 1
            mm = re.match(r"\.\s*(\w+)\s*(\()?", text[k:])
            if not mm or not mm.group(2):
                break
            op = k + mm.end() - 1
            cl = match_close(text, op)
            arg.calls.append((mm.group(1), text[op + 1 : cl].strip()))
            j = cl + 1
        arg.end = j
        found.append(arg)
    return found


class Resolver:
    """Resolves identifiers used as flag names to their string values at one commit."""

    def __init__(self, mirror: Path, ref: str, local_text: str) -> None:
        self.mirror = mirror
        self.ref = ref
        self.local = local_text
        self.cache: dict[str, str | None] = {}

    def _grep(self, pattern: str) -> str:
        r = subprocess.run(
            [
                "git",
                "-C",
                str(self.mirror),
                "grep",
                "-h",
                "-A6",
                "-E",
                pattern,
                self.ref,
                "--",
                "*.rs",
            ],
            capture_output=True,
            text=True,
        )
        return r.stdout

    def const(self, ident: str) -> str | None:
        """Value of ``const IDENT: &str = "..."`` (local file first, then the tree)."""
        key = ident
        if key in self.cache:
            return self.cache[key]
        pat = rf"const\s+{re.escape(ident)}\s*:\s*&(?:'static\s+)?str\s*=\s*\"([^\"]*)\""
        m = re.search(pat, self.local) or re.search(pat, self._grep(rf"const {ident}\b"))
        self.cache[key] = m.group(1) if m else None
        return self.cache[key]

    def arg_constant(self, ident: str, fld: str) -> str | None:
        """Field of a ``pub const IDENT: ArgConstant`` (solana_clap_utils)."""
        text = self._grep(rf"const {ident}\s*:\s*ArgConstant")
        m = re.search(rf"\b{fld}\s*:\s*\"([^\"]*)\"", text)
        return m.group(1) if m else None

    def value(self, expr: str) -> str | None:
        """Resolve a name/long expression to its string, or None."""
        expr = expr.strip().lstrip("&")
        lits = string_literals(expr)
        if lits and re.fullmatch(r'\s*r?#*".*"#*\s*', expr, re.S):
            return lits[0]
        m = re.fullmatch(r"(\w+)\.(name|long|help)", expr)
        if m:
            return self.arg_constant(m.group(1), m.group(2))
        m = re.fullmatch(r"(?:[\w:]+::)?(\w+)", expr)
        if m:
            return self.const(m.group(1))
        return None


def _bool_arg(v: str) -> bool:
    return v.strip() != "false"


def _names(expr: str, resolver: Resolver) -> list[str]:
    lits = string_literals(expr)
    if lits:
        return lits
    v = resolver.value(expr)
    return [v] if v else []


def build_flag(raw: RawArg, resolver: Resolver) -> dict[str, Any] | None:
    """Turn a RawArg into a flag record (None for positional args)."""
    name = resolver.value(raw.name_expr)
    rec: dict[str, Any] = {
        "name": name,
        "long": None,
        "short": None,
        "aliases": [],
        "takes_value": False,
        "value_optional": False,
        "multiple": False,
        "hidden": False,
        "possible_values": None,
        "default": None,
        "conflicts_with": [],
        "requires": [],
        "value_name": None,
        "help": "",
    }
    for meth, argtext in raw.calls:
        if meth == "long":
            rec["long"] = resolver.value(argtext)
            if rec["long"] is None:
                rec["long_unresolved"] = argtext
        elif meth == "short":
            lit = string_literals(argtext)
            rec["short"] = lit[0] if lit else argtext.strip("'")
        elif meth in ("alias", "visible_alias"):
            rec["aliases"] += _names(argtext, resolver)
        elif meth in ("aliases", "visible_aliases"):
            rec["aliases"] += string_literals(argtext)
        elif meth == "takes_value":
            rec["takes_value"] = _bool_arg(argtext)
        elif meth in ("value_name", "value_names"):
            rec["takes_value"] = True
            lits = string_literals(argtext)
            rec["value_name"] = lits[0] if lits else argtext
        elif meth in ("default_value", "default_value_if"):
            rec["takes_value"] = True
            if meth == "default_value":
                lits = string_literals(argtext)
                rec["default"] = lits[0] if lits else argtext
        elif meth in ("number_of_values", "max_values") and argtext.strip().isdigit():
            rec[meth] = int(argtext.strip())
            rec["takes_value"] = True
        elif meth == "require_delimiter":
            rec["require_delimiter"] = _bool_arg(argtext)
        elif meth == "min_values":
            rec["takes_value"] = True
            if argtext.strip() == "0":
                rec["value_optional"] = True
        elif meth in ("multiple", "multiple_occurrences"):
            rec["multiple"] = _bool_arg(argtext)
        elif meth == "hidden":
            rec["hidden"] = _bool_arg(argtext)
        elif meth == "possible_values":
            lits = string_literals(argtext)
            rec["possible_values"] = lits if lits else None
            if not lits:
                rec["possible_values_expr"] = argtext
        elif meth in ("conflicts_with", "conflicts_with_all"):
            rec["conflicts_with"] += _names(argtext, resolver)
        elif meth in ("requires", "requires_all"):
            rec["requires"] += _names(argtext, resolver)
        elif meth in ("help", "long_help") and not rec["help"]:
            rec["help"] = " ".join(" ".join(string_literals(argtext)).split())
    if rec["long"] is None and rec["short"] is None:
        if "long_unresolved" in rec:
            raise ValueError(f"unresolved long name {rec['long_unresolved']!r} ({name})")
        return None  # positional
    if len(rec["help"]) > 240:
        rec["help"] = rec["help"][:237].rstrip() + "..."
    return rec


# ---------------------------------------------------------------- per-commit extraction


def _thread_args(mirror: Path, ref: str, text: str) -> list[dict[str, Any]]:
    text = drop_tests(strip_comments(text))
    body = fn_body(text, "thread_args") or ""
    used = re.findall(r"new_thread_arg::<\s*(\w+)\s*>", body)
    out = []
    # early 2.0 builds the Args inline instead of through `impl ThreadArg`
    resolver = Resolver(mirror, ref, text)
    for ch in parse_chains(body):
        rec = build_flag(ch, resolver)
        if rec:
            rec["hidden"] = rec["hidden"] or False
            out.append(rec)
    out += thread_impls(used, text, ref)
    return out


def thread_impls(used: list[str], text: str, ref: str) -> list[dict[str, Any]]:
    """Flag records for ``new_thread_arg::<T>`` uses, from the ``impl ThreadArg for T`` blocks."""
    out = []
    for typ in used:
        m = re.search(rf"impl\s+ThreadArg\s+for\s+{typ}\s*\{{", text)
        if not m:
            raise ValueError(f"no impl ThreadArg for {typ} at {ref}")
        body = text[m.end() : match_close(text, m.end() - 1)]

        def cst(n: str, body: str = body, typ: str = typ) -> str:
            mm = re.search(rf"const\s+{n}\s*:\s*&'static\s+str\s*=\s*(.*?);", body, re.S)
            if not mm:
                raise ValueError(f"{typ}: no {n}")
            return " ".join(" ".join(string_literals(mm.group(1))).split())

        out.append(
            {
                "name": cst("NAME"),
                "long": cst("LONG_NAME"),
                "short": None,
                "aliases": [],
                "takes_value": True,
                "value_optional": False,
                "multiple": False,
                "hidden": True,
                "possible_values": None,
                "default": "computed from the number of CPUs (see thread_args.rs)",
                "conflicts_with": [],
                "requires": [],
                "value_name": "NUMBER",
                "help": cst("HELP"),
            }
        )
    return out


def _deprecated_meta(body: str, chains: list[RawArg]) -> dict[int, dict[str, str]]:
    """For each chain in deprecated_arguments(), the replaced_by / usage_warning after it."""
    meta: dict[int, dict[str, str]] = {}
    for idx, ch in enumerate(chains):
        nxt = chains[idx + 1].end if idx + 1 < len(chains) else len(body)
        # text between this chain's end and the next add_arg!( call
        m = re.search(r"add_arg!\s*\(", body[ch.end : nxt])
        tail = body[ch.end : ch.end + m.start()] if m else body[ch.end : nxt]
        info: dict[str, str] = {}
        for key in ("replaced_by", "usage_warning"):
            mm = re.search(rf"{key}\s*:\s*((?:\"(?:[^\"\\]|\\.)*\"\s*)+)", tail, re.S)
            if mm:
                info[key] = " ".join(" ".join(string_literals(mm.group(1))).split())
        meta[idx] = info
    return meta


def extract(mirror: Path, ref: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Return (flags, files read) of the validator's run command at ref."""
    files: list[str] = []
    flags: list[dict[str, Any]] = []
    cli = try_show(mirror, ref, "validator/src/cli.rs")
    if cli is None:
        raise ValueError(f"no validator/src/cli.rs at {ref}")
    files.append("validator/src/cli.rs")
    cli_s = strip_comments(cli)
    resolver = Resolver(mirror, ref, cli_s)

    app = fn_body(cli_s, "app")
    assert app is not None
    app = remove_calls(app, "subcommand")
    for ch in parse_chains(app):
        rec = build_flag(ch, resolver)
        if rec:
            flags.append(rec)

    dep = fn_body(cli_s, "deprecated_arguments") or ""
    chains = parse_chains(dep)
    meta = _deprecated_meta(dep, chains)
    for idx, ch in enumerate(chains):
        rec = build_flag(ch, resolver)
        if rec:
            rec["hidden"] = True
            rec["deprecated"] = True
            rec.update(meta[idx])
            flags.append(rec)

    run_files = ["validator/src/commands/run/args.rs"]
    listing = git(mirror, "ls-tree", "--name-only", ref, "validator/src/commands/run/args/")
    run_files += sorted(p for p in listing.split() if p.endswith(".rs"))
    for path in run_files:
        text = try_show(mirror, ref, path)
        if text is None:
            continue
        files.append(path)
        body = drop_tests(strip_comments(text))
        body = remove_calls(body, "subcommand")
        res = Resolver(mirror, ref, body)
        for ch in parse_chains(body):
            rec = build_flag(ch, res)
            if rec:
                flags.append(rec)
        # thread-count flags built by new_thread_arg::<T>() in this file (e.g. rocksdb's)
        flags += thread_impls(re.findall(r"new_thread_arg::<\s*(\w+)\s*>", body), body, ref)

    # run arguments built by another command's module: .arg(bam::argument()) (Jito-Solana's
    # --bam-url lives in validator/src/commands/bam/mod.rs)
    run_body = try_show(mirror, ref, "validator/src/commands/run/args.rs") or ""
    for module in sorted(set(re.findall(r"\.arg\(\s*(\w+)::argument\(\)\s*\)", run_body))):
        path = f"validator/src/commands/{module}/mod.rs"
        text = try_show(mirror, ref, path)
        if text is None:
            continue
        files.append(path)
        body = drop_tests(strip_comments(text))
        m = re.search(r"fn argument\(\)[^{]*\{(.*?)\n\}", body, re.S)
        res = Resolver(mirror, ref, body)
        for ch in parse_chains(m.group(1) if m else ""):
            rec = build_flag(ch, res)
            if rec:
                flags.append(rec)

    thread = try_show(mirror, ref, "validator/src/cli/thread_args.rs")
    if thread is not None:
        files.append("validator/src/cli/thread_args.rs")
        flags += _thread_args(mirror, ref, thread)

    # one record per long name; a name can legitimately be built twice (e.g. a variable
    # reused under two conditions), keep the first and merge what differs.
    merged: dict[str, dict[str, Any]] = {}
    for rec in flags:
        key = rec["long"] or "-" + rec["short"]
        rec.setdefault("deprecated", False)
        if key in merged:
            merged[key]["aliases"] = sorted(set(merged[key]["aliases"]) | set(rec["aliases"]))
            continue
        merged[key] = rec
    by_name = {r["name"]: (r["long"] or r["name"]) for r in merged.values() if r["name"]}
    for rec in merged.values():
        rec["conflicts_with"] = sorted({by_name.get(n, n) for n in rec["conflicts_with"]})
        rec["requires"] = sorted({by_name.get(n, n) for n in rec["requires"]})
    return sorted(merged.values(), key=lambda r: r["long"] or r["short"]), files


def upstream_parent(mirror: Path, tag: str) -> str:
    """The upstream commit under the Jito patch stack of a Jito tag."""
    log = git(mirror, "log", "--first-parent", "--format=%H %s", "-n", "400", tag)
    for line in log.splitlines():
        sha, _, subject = line.partition(" ")
        if re.search(r"jito patch", subject, re.I):
            return git(mirror, "rev-parse", f"{sha}^1").strip()
    raise ValueError(f"no 'Jito Patch' commit under {tag}")


def const_int(mirror: Path, ref: str, name: str, paths: list[str]) -> int | None:
    """Value of ``pub const NAME: uNN = 1_000;`` under paths at ref (first definition)."""
    r = subprocess.run(
        [
            "git",
            "-C",
            str(mirror),
            "grep",
            "-h",
            "-E",
            rf"pub const {name}: u[0-9]+ =",
            ref,
            "--",
            *paths,
        ],
        capture_output=True,
        text=True,
    )
    m = re.search(rf"pub const {name}: u\d+ = ([\d_]+)", r.stdout)
    return int(m.group(1).replace("_", "")) if m else None


def limits(mirror: Path, ref: str) -> dict[str, Any]:
    """Start-up checks the validator applies to flag values, with their constants at ref."""
    health = None
    text = "\n".join(
        try_show(mirror, ref, p) or ""
        for p in ("validator/src/cli.rs", "validator/src/commands/run/args/json_rpc_config.rs")
    )
    m = re.search(r'health_check_slot_distance:\s*"(\d+)"', text)
    if m:
        health = int(m.group(1))
    elif "DELINQUENT_VALIDATOR_SLOT_DISTANCE" in text:
        health = const_int(mirror, ref, "DELINQUENT_VALIDATOR_SLOT_DISTANCE", ["*.rs"])
    return {
        # cli.rs port_range_validator: end - start must be >= this
        "min_port_range_width": const_int(
            mirror, ref, "MINIMUM_VALIDATOR_PORT_RANGE_WIDTH", ["net-utils/src"]
        ),
        # execute.rs / main.rs: --limit-ledger-size below this is refused at start
        "min_max_ledger_shreds": const_int(
            mirror, ref, "DEFAULT_MIN_MAX_LEDGER_SHREDS", ["ledger/src", "core/src"]
        ),
        # what a bare --limit-ledger-size keeps
        "default_max_ledger_shreds": const_int(
            mirror, ref, "DEFAULT_MAX_LEDGER_SHREDS", ["ledger/src", "core/src"]
        ),
        "default_health_check_slot_distance": health,
    }


def workspace_version(mirror: Path, ref: str) -> str:
    """The [workspace.package] version of Cargo.toml at ref."""
    text = try_show(mirror, ref, "Cargo.toml") or ""
    m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    return m.group(1) if m else "unknown"


def dump(doc: dict[str, Any]) -> str:
    """JSON with one flag per line: small, and diffs between releases stay readable."""
    head = {k: v for k, v in doc.items() if k not in ("flags", "jito_flags")}
    text = json.dumps(head, indent=1)[:-2]
    for key in ("flags", "jito_flags"):
        rows = ",\n  ".join(json.dumps(f, separators=(",", ":")) for f in doc[key])
        text += f',\n "{key}": [\n  {rows}\n ]'
    return text + "\n}\n"


def verify(mirror: Path) -> int:
    """Cross-check the shipped files: every literal long name, alias and ThreadArg LONG_NAME
    in the run scope of each source commit must be in that file's lists."""
    bad = 0
    for path in sorted(OUT_DIR.glob("*.json")):
        if path.name.startswith("before-"):
            continue  # old releases' flags, not a list of one release
        doc = json.loads(path.read_text())
        for kind in ("source", "jito"):
            flags = doc["flags"] + (doc["jito_flags"] if kind == "jito" else [])
            ours = {f["long"] for f in flags} | {a for f in flags for a in f["aliases"]}
            seen: set[str] = set()
            for name in doc[kind]["files"]:
                text = drop_tests(strip_comments(try_show(mirror, doc[kind]["commit"], name) or ""))
                m = re.search(r"pub fn test_app", text)
                text = remove_calls(text[: m.start()] if m else text, "subcommand")
                seen |= set(re.findall(r'\.(?:long|alias)\("([^"]+)"\)', text))
                seen |= set(re.findall(r"LONG_NAME: &'static str = \"([^\"]+)\"", text))
            missing = sorted(seen - ours)
            bad += len(missing)
            print(f"{doc['release_line']} {kind}: {len(ours)} names, not in the list: {missing}")
    return 1 if bad else 0


# release lines older than the oldest shipped list (there was no 1.12 and no 1.15 release)
OLDER_LINES = (
    "1.0",
    "1.1",
    "1.2",
    "1.3",
    "1.4",
    "1.5",
    "1.6",
    "1.7",
    "1.8",
    "1.9",
    "1.10",
    "1.11",
    "1.13",
    "1.14",
)
# successors the code of an old release shows without naming them in a help text or alias
# (each was read at the commit named; never guessed)
OLDER_SUCCESSORS: dict[str, tuple[str, str]] = {
    "voting-keypair": (
        "authorized-voter",
        "v1.1.0 validator/src/main.rs: hidden 'deprecated_voting_keypair', read as the "
        "--authorized-voter keypair and (legacy v1.0.6 behaviour) as the --vote-account",
    ),
}
_USE_RE = re.compile(
    r"(?:use|replaced by|superseded by|instead of this,? use|renamed to)\s+`?--([a-z][a-z0-9-]+)",
    re.I,
)


def older_refs(mirror: Path, line: str) -> list[tuple[str, str]]:
    """(release, commit) of every release of an old line the mirror has.

    Upstream tags stop at v1.13.5 and v1.14.8 in the mirror; the later 1.13/1.14 releases
    are read at the upstream commit under their Jito tags.
    """

    def patch(tag: str) -> int:
        return int(tag.removesuffix("-jito").rsplit(".", 1)[1])

    tags = git(mirror, "tag", "--list", f"v{line}.*").split()
    plain = sorted((t for t in tags if re.fullmatch(rf"v{re.escape(line)}\.\d+", t)), key=patch)
    last = patch(plain[-1]) if plain else -1
    jito = sorted(
        (t for t in tags if re.fullmatch(rf"v{re.escape(line)}\.\d+-jito", t) and patch(t) > last),
        key=patch,
    )
    refs = [(t, git(mirror, "rev-parse", f"{t}^{{commit}}").strip()) for t in plain]
    refs += [(f"{t.removesuffix('-jito')} (under {t})", upstream_parent(mirror, t)) for t in jito]
    return refs


def older_flags(mirror: Path, ref: str) -> list[dict[str, Any]]:
    """The run flags of an old ``solana-validator`` (clap chains in validator/src/main.rs)."""
    text = try_show(mirror, ref, "validator/src/main.rs")
    if text is None:
        raise ValueError(f"no validator/src/main.rs at {ref}")
    body = remove_calls(drop_tests(strip_comments(text)), "subcommand")
    resolver = Resolver(mirror, ref, body)
    out = []
    for ch in parse_chains(body):
        try:
            rec = build_flag(ch, resolver)
        except ValueError:
            continue  # a name built at run time (none in the run command's flags)
        if rec and rec["long"]:
            # clap 2 trims leading dashes: .long("--private-rpc") is --private-rpc
            rec["long"] = rec["long"].lstrip("-")
            rec["aliases"] = [a.lstrip("-") for a in rec["aliases"]]
            out.append(rec)
    return out


def older(mirror: Path) -> int:
    """Write before-1.16.json: every run flag of 1.0-1.14 that no shipped list has.

    Per name: the release lines that had it, where it was read, and its successor when the
    sources say so (the old flag was an alias of a flag the shipped lists have, or its help
    says to use another flag); no successor is ever guessed.
    """
    shipped: set[str] = set()
    for path in OUT_DIR.glob("*.json"):
        if path.name.startswith("before-"):
            continue
        doc = json.loads(path.read_text())
        for f in doc["flags"] + doc["jito_flags"]:
            shipped.add(f["long"])
            shipped.update(f["aliases"])
    found: dict[str, dict[str, Any]] = {}
    read: list[dict[str, str]] = []
    for line in OLDER_LINES:
        for label, commit in older_refs(mirror, line):
            read.append({"line": line, "release": label, "commit": commit})
            for rec in older_flags(mirror, commit):
                names = [rec["long"], *rec["aliases"]]
                for name in names:
                    if name in shipped:
                        continue
                    entry = found.setdefault(
                        name, {"lines": [], "successor": None, "why": "", "help": ""}
                    )
                    if line not in entry["lines"]:
                        entry["lines"].append(line)
                    entry["help"] = rec["help"][:160]
                    entry["takes_value"] = rec["takes_value"]
                    # an alias of a flag that lives on: that flag took over
                    live = [n for n in names if n in shipped]
                    use = _USE_RE.search(rec["help"] or "")
                    if live:
                        entry["successor"] = live[0]
                        entry["why"] = f"an alias of --{live[0]} in {line}"
                    elif use and use.group(1) in shipped:
                        entry["successor"] = use.group(1)
                        entry["why"] = f"its {line} help: {use.group(0)!r}"
    for name, (successor, why) in OLDER_SUCCESSORS.items():
        if name in found and successor in shipped:
            found[name]["successor"], found[name]["why"] = successor, why
    by_line: dict[str, list[str]] = {}
    for r in read:  # tags name their commit; a release read under a Jito tag names it
        by_line.setdefault(r["line"], []).append(
            r["release"] if "under" not in r["release"] else f"{r['release']} {r['commit']}"
        )
    doc = {
        "schema": 1,
        "what": "run flags of solana-validator 1.0-1.14 that no shipped list (1.16-master) has",
        "read": by_line,
        "read_from": f"{MIRROR_REPO} mirror (upstream history), validator/src/main.rs",
        "flags": {k: found[k] for k in sorted(found)},
    }
    out = OUT_DIR / "before-1.16.json"
    head = json.dumps({k: v for k, v in doc.items() if k not in ("read", "flags")}, indent=1)
    rows = lambda d: ",\n  ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in d.items())  # noqa: E731
    out.write_text(
        head[:-2] + f',\n "read": {{\n  {rows(by_line)}\n }},\n "flags": {{\n  '
        f"{rows(doc['flags'])}\n }}\n}}\n"
    )
    with_succ = sum(1 for v in found.values() if v["successor"])
    print(f"{len(found)} flags removed before 1.16 ({with_succ} with a successor) -> {out.name}")
    return 0


def main(argv: list[str]) -> int:
    """Extract every release line and write the data files (``--verify``: cross-check)."""
    if len(argv) > 2 and argv[2] == "--verify":
        return verify(Path(argv[1]))
    if len(argv) > 2 and argv[2] == "--older":
        return older(Path(argv[1]))
    mirror = Path(argv[1])
    only = set(argv[2:])
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for line, (binary, tag, upstream_repo) in RELEASES.items():
        if only and line not in only:
            continue
        jito_commit = git(mirror, "rev-parse", f"{tag}^{{commit}}").strip()
        base = upstream_parent(mirror, tag)
        up_flags, up_files = extract(mirror, base)
        jito_all, jito_files = extract(mirror, jito_commit)
        up_longs = {f["long"] for f in up_flags}
        jito_only = [f for f in jito_all if f["long"] not in up_longs]
        doc = {
            "schema": 1,
            "release_line": line,
            "binary": binary,
            "version": workspace_version(mirror, base),
            "source": {
                "repo": upstream_repo,
                "commit": base,
                "read_from": f"{MIRROR_REPO} mirror (upstream history under tag {tag})",
                "files": up_files,
            },
            "jito": {
                "repo": MIRROR_REPO,
                "tag": tag if tag != "HEAD" else "master",
                "commit": jito_commit,
                "version": workspace_version(mirror, jito_commit),
                "files": jito_files,
            },
            "limits": limits(mirror, base),
            "flags": up_flags,
            "jito_flags": jito_only,
        }
        doc["note"] = (
            f"Read at the upstream commit under Jito's patch stack of {tag} (the release "
            "the Jito build is based on), not at an upstream tag: the solana-labs/solana and "
            "anza-xyz/agave repositories were too large to fetch whole here."
        )
        if line == "master":
            doc["note"] = (
                "Agave master as Jito-Solana's master was last rebased onto it (the parent of "
                "its 'Jito Patch' commit). anza-xyz/agave was too large to fetch whole here, "
                "so master commits after that one (e.g. the 4.4.0-alpha line) are not read."
            )
        out = OUT_DIR / f"{line}.json"
        out.write_text(dump(doc))
        print(
            f"{line}: {doc['version']} @ {base[:10]}  flags={len(up_flags)} "
            f"jito_only={len(jito_only)} -> {out.name}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
