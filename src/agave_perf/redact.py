"""Redaction of secrets in endpoint URLs, applied to every URL agave-perf prints or stores.

Providers put keys anywhere: a query value under any name (``api-key``, ``x-api-key``,
``access_key``, ...), a path segment of any length (``/SECRET123/``), user info. Guessing
which part is a key leaks the ones the guess misses, so the rule is by position:

- user info, every query value and the fragment are masked, for every URL;
- every path segment of a non-local URL is masked; host and port stay, so a reader can
  still tell which provider and which port;
- a local URL (localhost, 127.0.0.0/8, ::1, or no host at all) keeps its path: it is the
  user's own node or simnet, and the path tells the endpoints apart. Segments that look
  like a credential (long, letters and digits) are masked even there.

Text without a scheme (``rpc.example.com/KEY``) is read as ``host/path`` and redacted the
same way, since users paste URLs without ``https://`` and error messages echo them.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

# A path segment that looks like a credential (Helius, QuickNode, Triton style /<token>/),
# masked even on a local URL. Short words like "rpc" or "v1" stay readable there.
_TOKEN_SEGMENT = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_\-]{16,}$")
MASK = "***"


def _is_local(hostname: str) -> bool:
    """Whether a host is this machine: localhost, 127.0.0.0/8 or ::1."""
    host = hostname.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _netloc(parts: SplitResult) -> str:
    """Host and port as given, with user info masked; a port that is not a number is masked."""
    hostport = parts.netloc.rsplit("@", 1)[-1]
    # the host as written (``hostname`` lowercases it and drops an IPv6 address's brackets)
    if hostport.startswith("["):
        host = hostport[: hostport.index("]") + 1]
    else:
        host = hostport.rsplit(":", 1)[0]
    try:
        port: int | str | None = parts.port
    except ValueError:  # out of range (kept: it is no secret) or not a number (masked)
        text = hostport.rsplit(":", 1)[-1]
        port = text if text.isdigit() else MASK
    netloc = f"{host}:{port}" if port is not None else host
    if hostport.endswith(":") and port is None:
        netloc += ":"
    return f"{MASK}@{netloc}" if "@" in parts.netloc else netloc


def _path(path: str, local: bool) -> str:
    """Every segment masked, or on a local URL only the credential-like ones."""
    return "/".join(
        seg if not seg or (local and not _TOKEN_SEGMENT.match(seg)) else MASK
        for seg in path.split("/")
    )


def _query(query: str) -> str:
    """Every value masked; the keys stay so the reader sees which parameters were given."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, MASK if v else v) for k, v in pairs], safe="*")


def redact_url(url: str) -> str:
    """Return ``url`` with user info, query values, fragment and (non-local) path masked."""
    try:
        parts = urlsplit(url)
        schemeless = not parts.netloc and not parts.path.startswith("/")
        if schemeless:  # "host/path" or "host:port/path": urlsplit takes the host for a scheme
            parts = urlsplit("//" + url)
        netloc = _netloc(parts)
    except ValueError:  # cannot be parsed, so no part of it can be shown safely
        return MASK
    if not parts.netloc:  # no host (sqlite:////path, file:/path): a local path, kept as written
        head = url.split("#", 1)[0].split("?", 1)[0]
        query = f"?{_query(parts.query)}" if parts.query else ""
        return head + query + (f"#{MASK}" if parts.fragment else "")
    local = _is_local(parts.hostname or "")
    out = urlunsplit(
        (
            "" if schemeless else parts.scheme,
            netloc,
            _path(parts.path, local),
            _query(parts.query),
            MASK if parts.fragment else "",
        )
    )
    return out.removeprefix("//") if schemeless else out


def redact_text(text: str, urls: list[str]) -> str:
    """Replace every occurrence of the given raw URLs in ``text`` by their redacted form."""
    for url in sorted(urls, key=len, reverse=True):
        if url:
            text = text.replace(url, redact_url(url))
    return text
