"""Redaction of secrets in endpoint URLs, applied to every URL agave-perf prints or stores."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_KEYS = re.compile(
    r"(api[-_]?key|key|token|secret|auth|access[-_]?token|x-token|password|passwd|pass|pwd|sig)",
    re.I,
)
# A path segment that looks like a credential: long and mixed letters/digits (Helius, QuickNode,
# Triton style /<token>/ paths). Short words like "rpc" or "v1" stay readable.
_TOKEN_SEGMENT = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_\-]{16,}$")
MASK = "***"


def redact_url(url: str) -> str:
    """Return ``url`` with basic-auth, secret query parameters and token-like path parts masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return url
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # out of range or not a number: keep the text, it is no secret
        port_text = parts.netloc.rsplit("@", 1)[-1].rsplit(":", 1)
        host = parts.netloc.rsplit("@", 1)[-1] if len(port_text) == 2 else host
        port = None
    if port is not None:
        host = f"{host}:{port}"
    if parts.username or parts.password:
        host = f"{MASK}@{host}"
    path = "/".join(MASK if _TOKEN_SEGMENT.match(seg) else seg for seg in parts.path.split("/"))
    query = urlencode(
        [
            (k, MASK if _SECRET_KEYS.fullmatch(k) or _TOKEN_SEGMENT.match(v) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return urlunsplit((parts.scheme, host, path, query, parts.fragment))


def redact_text(text: str, urls: list[str]) -> str:
    """Replace every occurrence of the given raw URLs in ``text`` by their redacted form."""
    for url in sorted(urls, key=len, reverse=True):
        if url:
            text = text.replace(url, redact_url(url))
    return text
