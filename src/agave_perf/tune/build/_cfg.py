"""Cargo's ``[target.'cfg(...)']`` keys and rustflags precedence, evaluated for the host."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(r'\s*(?:(\w+)|"([^"]*)"|([(),=]))')


def host_cfg(triple: str) -> dict[str, str | bool]:
    """Return the cfg values of a target triple such as ``x86_64-unknown-linux-gnu``."""
    parts = triple.split("-")
    arch = parts[0] if parts else ""
    os_name = parts[2] if len(parts) > 2 else ""
    env = parts[3] if len(parts) > 3 else ""
    unix = os_name in {"linux", "freebsd", "netbsd", "openbsd", "darwin", "android"}
    return {
        "target_arch": arch,
        "target_os": "macos" if os_name == "darwin" else os_name,
        "target_env": env,
        "target_family": "unix" if unix else ("windows" if os_name == "windows" else ""),
        "target_pointer_width": "64" if "64" in arch else "32",
        "unix": unix,
        "windows": os_name == "windows",
    }


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip():
                raise ValueError(f"bad cfg expression: {text!r}")
            break
        ident, string, punct = m.groups()
        out.append(ident if ident is not None else (f'"{string}"' if string is not None else punct))
        pos = m.end()
    return out


def eval_cfg(expr: str, values: Mapping[str, str | bool]) -> bool:
    """Evaluate a ``cfg(...)`` expression (any/all/not, key, key = "value") for the host."""
    tokens = _tokens(expr)
    pos = 0

    def take() -> str:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        return tok

    def pred() -> bool:
        name = take()
        if name in {"any", "all", "not"}:
            assert take() == "("
            results: list[bool] = []
            while tokens[pos] != ")":
                results.append(pred())
                if tokens[pos] == ",":
                    take()
            take()
            if name == "any":
                return any(results)
            if name == "all":
                return all(results)
            return not results[0]
        if pos < len(tokens) and tokens[pos] == "=":
            take()
            return str(values.get(name, "")) == take().strip('"')
        return bool(values.get(name, False))

    if tokens[:2] != ["cfg", "("] or tokens[-1] != ")":
        raise ValueError(f"not a cfg() key: {expr!r}")
    tokens = tokens[2:-1]
    return pred()


def _flags(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return shlex.split(value)
    return []


def effective_rustflags(
    config: Mapping[str, Any], env: Mapping[str, str], triple: str
) -> tuple[list[str], str]:
    """Return the rustflags cargo would use and where they come from (cargo's precedence).

    CARGO_ENCODED_RUSTFLAGS, then RUSTFLAGS, then ``target.<triple>`` and matching
    ``target.cfg(...)`` rustflags (joined), then ``build.rustflags``: the first
    source that is set wins, the others are ignored.
    """
    # Set-but-empty still wins, as in cargo.
    if "CARGO_ENCODED_RUSTFLAGS" in env:
        encoded = env["CARGO_ENCODED_RUSTFLAGS"]
        return (encoded.split("\x1f") if encoded else []), "CARGO_ENCODED_RUSTFLAGS"
    if "RUSTFLAGS" in env:
        return shlex.split(env["RUSTFLAGS"]), "RUSTFLAGS"
    values = host_cfg(triple)
    target_flags: list[str] = []
    sources: list[str] = []
    for key, table in (config.get("target") or {}).items():
        if not isinstance(table, dict) or "rustflags" not in table:
            continue
        try:
            matches = key == triple or (key.startswith("cfg(") and eval_cfg(key, values))
        except (ValueError, IndexError, AssertionError):
            matches = False
        if matches:
            target_flags += _flags(table["rustflags"])
            sources.append(f"[target.{key!r}]")
    if sources:
        return target_flags, ".cargo/config " + ", ".join(sources)
    build = config.get("build") or {}
    if isinstance(build, dict) and "rustflags" in build:
        return _flags(build["rustflags"]), ".cargo/config [build]"
    return [], "none"


def target_cpu(flags: list[str]) -> str | None:
    """Return the ``-C target-cpu`` value in a rustflags list, if any (last one wins)."""
    found: str | None = None
    for i, flag in enumerate(flags):
        value = None
        if flag == "-C" and i + 1 < len(flags):
            value = flags[i + 1]
        elif flag.startswith("-C") and len(flag) > 2:
            value = flag[2:]
        elif flag.startswith("--codegen="):
            value = flag.removeprefix("--codegen=")
        if value and value.startswith("target-cpu="):
            found = value.removeprefix("target-cpu=")
    return found


def without_target_cpu(flags: list[str]) -> list[str]:
    """Return rustflags with every ``-C target-cpu=...`` removed."""
    out: list[str] = []
    skip = False
    for i, flag in enumerate(flags):
        if skip:
            skip = False
            continue
        if flag == "-C" and i + 1 < len(flags) and flags[i + 1].startswith("target-cpu="):
            skip = True
            continue
        if flag.startswith(("-Ctarget-cpu=", "--codegen=target-cpu=")):
            continue
        out.append(flag)
    return out
