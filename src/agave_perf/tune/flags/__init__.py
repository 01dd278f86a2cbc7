"""Validator command-line audit: flag lists per release, script parser, checks, advice, fixes."""

from __future__ import annotations

from agave_perf.tune.flags._audit import AuditReport, audit_text, fix
from agave_perf.tune.flags._catalog import FlagCatalog, FlagSpec, Release
from agave_perf.tune.flags._fix import FixResult, apply_edits
from agave_perf.tune.flags._parse import Invocation, ParsedInput, Word, parse, quote
from agave_perf.tune.flags._recommend import PROFILES, HostFacts
from agave_perf.tune.flags._validate import (
    Edit,
    FlagFinding,
    FlagUse,
    Positional,
    interpret,
    render,
    validate,
)

__all__ = [
    "PROFILES",
    "AuditReport",
    "Edit",
    "FixResult",
    "FlagCatalog",
    "FlagFinding",
    "FlagSpec",
    "FlagUse",
    "HostFacts",
    "Invocation",
    "ParsedInput",
    "Positional",
    "Release",
    "Word",
    "apply_edits",
    "audit_text",
    "fix",
    "interpret",
    "parse",
    "quote",
    "render",
    "validate",
]
