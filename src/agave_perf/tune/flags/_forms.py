"""The places a validator command line lives besides a plain script or unit.

Each reader here finds the command inside one kind of file and hands it to the shell
reader of :mod:`._parse` with every span still pointing into the original file:

- Jinja2 (Ansible) and Go/Helm templates: ``{{ value }}`` stays one word, shown as written
  and never guessed; a ``{% if %}``/``{% for %}`` line between continuation lines is skipped
  the way the rendered file has it, and every word remembers the conditional it sits in;
- NixOS: the command in a Nix string (``"..."`` or ``''...''``), or a Nix list of arguments
  (``[ "${cfg.package}/bin/agave-validator" "--ledger" cfg.ledger ] ++ optionals c [ ... ]``);
- YAML (docker-compose ``entrypoint:``/``command:``, Kubernetes ``command:``/``args:``, and any
  ``|`` block holding a script, as cloud-init ``write_files`` or a ConfigMap does);
- Dockerfile ``ENTRYPOINT``/``CMD`` in exec (JSON) or shell form.

Templates are masked, not rendered: a template tag becomes blanks and a value's blanks and
quotes become private-use characters of the same length, so offsets never move.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, replace

from agave_perf.tune.flags._parse import (
    VALIDATOR_RE,
    VALIDATOR_WORD_RE,
    Invocation,
    Note,
    ParsedInput,
    Word,
    _command_name,
    _Env,
    _find_invocation,
    _subcommand,
    is_systemd_unit,
    join_conditions,
    parse_shell,
    parse_systemd,
    remap,
)

# ------------------------------------------------------------------------------ templates

# shell-special characters inside a template value, masked one for one
_MASKED = " \t'\"|()$;&<>\\`#*?[]!"
_MASK = {ord(c): chr(0xE000 + ord(c)) for c in _MASKED}
_UNMASK = {v: k for k, v in ((k, ord(v)) for k, v in _MASK.items())}
_TEMPLATE_RE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_GO_CONTROL = re.compile(r"^-?\s*(?:(?:if|else|end|range|with|define|block|template)\b|/\*)")


def has_template(text: str) -> bool:
    """True when the text uses Jinja2 or Go template syntax."""
    return bool(re.search(r"\{%-?\s*\w|\{\{-?\s*[\w.$(\"']", text))


@dataclass
class Masked:
    """A template with its tags blanked out and its values made single words."""

    text: str
    skip_lines: frozenset[int]
    # (offset, conditions as written, branch ids) from that offset on
    regions: list[tuple[int, str, tuple[tuple[int, int], ...]]]
    dialect: str  # "jinja" or "go"


def mask_templates(text: str) -> Masked:
    """Blank template tags and mask values, keeping every offset."""
    out = list(text)
    skip: set[int] = set()
    stack: list[tuple[int, int, str]] = []  # (chain id, branch, condition text)
    regions: list[tuple[int, str, tuple[tuple[int, int], ...]]] = [(0, "", ())]
    chains = 0
    go = False
    for m in _TEMPLATE_RE.finditer(text):
        tag = m.group(0)
        # "{{-"/"{%-" and "-}}"/"-%}" remove the blanks (newlines too) before/after the tag
        # from the rendered text: joined lines read as one line, offsets unchanged
        if tag[2:3] == "-":
            k = m.start() - 1
            while k >= 0 and text[k] in " \t\n":
                out[k] = " "
                k -= 1
        if tag[-3:-2] == "-":
            k = m.end()
            while k < len(text) and text[k] in " \t\n":
                out[k] = " "
                k += 1
        inner = tag[2:-2].strip().strip("-").strip()
        control = tag.startswith(("{%", "{#"))
        if tag.startswith("{{") and _GO_CONTROL.match(tag[2:-2].strip()):
            control, go = True, True
        if not control:
            for k in range(m.start(), m.end()):
                out[k] = text[k].translate(_MASK)
            continue
        for k in range(m.start(), m.end()):
            if out[k] != "\n":
                out[k] = " "
        ls = text.rfind("\n", 0, m.start()) + 1
        le = text.find("\n", m.end())
        le = len(text) if le < 0 else le
        if not _TEMPLATE_RE.sub("", text[ls:le]).strip():
            skip.add(ls)  # the line holds only tags: the rendered file has no such line
        if tag.startswith("{#"):
            continue
        word = inner.split(None, 1)[0] if inner else ""
        if word in ("if", "for", "range", "with"):
            chains += 1
            stack.append((chains, 0, tag.strip()))
        elif word in ("elif", "else") and stack:
            chain, branch, _ = stack.pop()
            stack.append((chain, branch + 1, tag.strip()))
        elif word.startswith("end") and stack:
            stack.pop()
        else:
            continue
        regions.append(
            (m.end(), " ".join(c for _, _, c in stack), tuple((c, b) for c, b, _ in stack))
        )
    return Masked("".join(out), frozenset(skip), regions, "go" if go else "jinja")


def _unmask(text: str) -> str:
    return text.translate(_UNMASK)


def _region_at(masked: Masked, offset: int) -> tuple[str, tuple[tuple[int, int], ...]]:
    found = masked.regions[0]
    for region in masked.regions:
        if region[0] > offset:
            break
        found = region
    return found[1], found[2]


def unmask_parsed(parsed: ParsedInput, masked: Masked, original: str) -> ParsedInput:
    """Give words their template text back, marked as template values, with their conditions."""

    def fix(w: Word) -> Word:
        text = _unmask(w.text)
        origin = "template" if text != w.text or "{{" in text else w.origin
        if w.start < 0:
            return replace(w, text=text, origin=origin)
        cond, branch = _region_at(masked, w.start)
        # whitespace control may have blanked newlines: count lines in the original
        line = original.count("\n", 0, w.start) + 1
        return replace(
            w,
            text=text,
            origin=origin,
            condition=join_conditions(cond, w.condition),
            branch=branch + w.branch,
            line=line,
        )

    for inv in parsed.invocations:
        inv.binary = fix(inv.binary)
        inv.argv = [fix(a) for a in inv.argv]
        inv.line = inv.binary.line
    parsed.notes = [replace(n, message=_unmask(n.message)) for n in parsed.notes]
    parsed.text = original
    return parsed


# ------------------------------------------------------------------------------ words


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _invocation_of(
    words: list[Word], text: str, form: str, env: _Env | None = None
) -> tuple[Invocation | None, ParsedInput | None]:
    """The validator run by an argv list (an exec-form list, or a shell -c script in it)."""
    if not words:
        return None, None
    head = _command_name(words[0].text)
    if head in ("sh", "bash", "dash") and len(words) >= 3 and words[1].text in ("-c", "-ec", "-xc"):
        w = words[2]
        src = text[w.start : w.end]
        lead = 1 if src[:1] in "\"'" else 0
        sub = parse_shell(
            text[w.start + lead : w.end - lead] if lead else src,
            base=w.start + lead,
            env=env or _Env(),
            line0=_line(text, w.start) - 1,
        )
        return None, sub
    inv, nested = _find_invocation(words, text, 0, False, env or _Env())
    if inv is not None:
        inv.form = form
    return inv, nested


# ------------------------------------------------------------------------------ JSON lists


def _json_list(text: str, start: int) -> tuple[list[Word], int] | None:
    """Read a JSON/YAML flow list of strings at ``text[start] == '['``, with item spans."""
    i = start + 1
    items: list[Word] = []
    while i < len(text):
        c = text[i]
        if c in " \t\r\n,":
            i += 1
            continue
        if c == "]":
            return items, i + 1
        if c == "#":  # a YAML comment inside a multi-line flow list
            eol = text.find("\n", i)
            i = len(text) if eol < 0 else eol
            continue
        if c in "\"'":
            j = i + 1
            while j < len(text) and text[j] != c:
                j += 2 if (text[j] == "\\" and c == '"') else 1
            raw = text[i : j + 1]
            try:
                value = json.loads(raw) if c == '"' else raw[1:-1].replace("''", "'")
            except ValueError:
                value = raw[1:-1]
            items.append(Word(str(value), i, j + 1, _line(text, i), in_list=True))
            i = j + 1
            continue
        j = i
        while j < len(text) and text[j] not in ",]\n":
            j += 1
        raw = text[i:j].rstrip()
        items.append(Word(raw, i, i + len(raw), _line(text, i), in_list=True))
        i = j
    return None


# ------------------------------------------------------------------------------ YAML


_KEY_RE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<dash>-[ \t]+)?(?P<key>[A-Za-z_][\w.-]*)[ \t]*:(?:[ \t]+(?P<rest>.*))?$"
)
# compose entrypoint/command, Kubernetes command/args, Ansible's shell/command modules (an
# inline string, or their cmd:/argv: parameters), in the order one argv is made of them
_CMD_KEYS = ("entrypoint", "command", "shell", "cmd", "argv", "args")
# Ansible modules by their fully qualified name: ansible.builtin.shell is shell
_ANSIBLE_FQCN = re.compile(r"^ansible\.(?:builtin|legacy)\.")
_ANSIBLE_RE = re.compile(
    r"^-[ \t]+(?:name|hosts|import_playbook|import_tasks|include_tasks|block)[ \t]*:", re.M
)


@dataclass
class _YamlValue:
    """The value of one key: a list of words, or a block of text with its offsets."""

    key: str
    indent: int
    line_start: int
    words: list[Word]
    block: tuple[str, list[int]] | None = None  # a ``|``/``>`` scalar: text and offsets


def _block_scalar(
    text: str, lines: list[tuple[int, str]], n: int, indent: int, folded: bool
) -> tuple[str, list[int], int]:
    """The text of a ``|``/``>`` block after line n (dedented; offsets into ``text``)."""
    chars: list[str] = []
    offsets: list[int] = []
    body_indent: int | None = None
    k = n + 1
    while k < len(lines):
        start, line = lines[k]
        stripped = line.strip()
        ind = len(line) - len(line.lstrip(" "))
        if stripped and ind <= indent:
            break
        if stripped and body_indent is None:
            body_indent = ind
        cut = min(body_indent or 0, len(line) - len(line.lstrip(" ")))
        for j, ch in enumerate(line[cut:]):
            chars.append(ch)
            offsets.append(start + cut + j)
        chars.append(" " if folded else "\n")
        offsets.append(start + len(line))
        k += 1
    offsets.append(offsets[-1] + 1 if offsets else len(text))
    return "".join(chars), offsets, k


def _scalar_word(text: str, start: int, raw: str) -> Word:
    raw = raw.rstrip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        value = raw[1:-1]
        if raw[0] == '"':
            with contextlib.suppress(ValueError):
                value = json.loads(raw)
        return Word(value, start, start + len(raw), _line(text, start), in_list=True)
    return Word(raw, start, start + len(raw), _line(text, start), in_list=True)


def _strip_comment(rest: str) -> str:
    m = re.search(r"[ \t]#", rest)
    if m and rest.count('"', 0, m.start()) % 2 == 0 and rest.count("'", 0, m.start()) % 2 == 0:
        return rest[: m.start()]
    return rest


def parse_yaml(text: str, masked: Masked | None = None) -> ParsedInput:
    """docker-compose, Kubernetes manifests, cloud-init and Helm values: find the command."""
    pos = 0
    lines: list[tuple[int, str]] = []
    for line in text.split("\n"):
        lines.append((pos, line))
        pos += len(line) + 1
    values: list[_YamlValue] = []
    used_blocks: set[int] = set()
    invocations: list[Invocation] = []
    notes: list[Note] = []
    subcalls = 0
    images: list[str] = []
    n = 0
    while n < len(lines):
        start, line = lines[n]
        m = _KEY_RE.match(line)
        if not m:
            n += 1
            continue
        key = _ANSIBLE_FQCN.sub("", m.group("key"))
        indent = len(m.group("indent")) + (len(m.group("dash")) if m.group("dash") else 0)
        rest = _strip_comment(m.group("rest") or "")
        rest_at = start + (m.start("rest") if m.group("rest") is not None else len(line))
        if key == "image" and rest.strip():
            images.append(_unmask(rest.strip().strip("\"'")))
        block = re.fullmatch(r"[ \t]*([|>])[-+0-9]*[ \t]*", rest)
        if block:
            btext, boff, nxt = _block_scalar(text, lines, n, indent, block.group(1) == ">")
            if key in _CMD_KEYS:
                values.append(_YamlValue(key, indent, start, [], (btext, boff)))
            elif VALIDATOR_WORD_RE.search(btext):
                used_blocks.add(n)
                sub = _script_block(btext, boff, text)
                invocations.extend(sub.invocations)
                notes.extend(sub.notes)
                subcalls += sub.subcommand_calls
            n = nxt
            continue
        if _VALUES_MAP_RE.match(key) and not rest.strip():
            inv, n = _values_map(text, lines, n, indent, key, start + m.start("key"))
            if inv is not None:
                invocations.append(inv)
            continue
        if key not in _CMD_KEYS:
            n += 1
            continue
        stripped = rest.strip()
        if stripped.startswith("["):
            at = rest_at + rest.index("[")
            got = _json_list(text, at)
            values.append(_YamlValue(key, indent, start, got[0] if got else []))
            n = _line(text, got[1]) if got else n + 1
            continue
        if stripped:
            # a string: compose splits it like a shell would
            lead = len(rest) - len(rest.lstrip())
            raw = rest.strip()
            if raw[:1] in "\"'" and raw[-1:] == raw[:1]:
                w = _scalar_word(text, rest_at + lead, raw)
                sub = parse_shell(w.text, base=w.start + 1, line0=_line(text, w.start) - 1)
                values.append(_YamlValue(key, indent, start, _words_of(sub, w.text), None))
            else:
                sub = parse_shell(raw, base=rest_at + lead, line0=_line(text, rest_at) - 1)
                values.append(_YamlValue(key, indent, start, _words_of(sub, raw), None))
            n += 1
            continue
        # a block sequence on the following lines
        words = []
        blocks: list[tuple[str, list[int]]] = []
        k = n + 1
        while k < len(lines):
            s2, l2 = lines[k]
            item = re.match(r"^([ \t]*)-[ \t]+(.*)$", l2)
            if not l2.strip() or l2.lstrip().startswith("#"):
                k += 1
                continue
            if not item or len(item.group(1)) < len(m.group("indent")):
                break
            body = _strip_comment(item.group(2))
            bl = re.fullmatch(r"([|>])[-+0-9]*[ \t]*", body.strip())
            if bl:
                btext, boff, k = _block_scalar(
                    text, lines, k, len(item.group(1)), bl.group(1) == ">"
                )
                blocks.append((btext, boff))
                words.append(Word(btext, boff[0], boff[-1], _line(text, boff[0]), in_list=True))
                continue
            words.append(_scalar_word(text, s2 + item.start(2), body))
            k += 1
        values.append(_YamlValue(key, indent, start, words, None))
        for b in blocks:
            if VALIDATOR_WORD_RE.search(b[0]):
                values[-1].block = b
        n = k
    # entrypoint/command (compose) or command/args (Kubernetes) at one indent form one argv
    groups: list[list[_YamlValue]] = []
    for v in values:
        if groups and groups[-1][0].indent == v.indent and v.key not in {g.key for g in groups[-1]}:
            groups[-1].append(v)
        else:
            groups.append([v])
    for group in groups:
        by = {v.key: v for v in group}
        argv: list[Word] = []
        for key in _CMD_KEYS:
            if key not in by:
                continue
            v = by[key]
            if v.block is not None and not v.words:
                sub = _script_block(v.block[0], v.block[1], text)
                invocations.extend(sub.invocations)
                notes.extend(sub.notes)
                subcalls += sub.subcommand_calls
                continue
            argv.extend(v.words)
        inv, nested = _invocation_of(argv, text, "YAML command list")
        if nested is not None:
            invocations.extend(nested.invocations)
            notes.extend(nested.notes)
            subcalls += nested.subcommand_calls
        if inv is not None:
            if _subcommand(inv.argv):
                subcalls += 1
            else:
                invocations.append(inv)
    kind = "kubernetes" if re.search(r"^\s*(apiVersion|kind)\s*:", text, re.M) else "compose"
    if kind == "compose" and any(i.form.startswith("values map") for i in invocations):
        kind = "helm values"
    elif kind == "compose" and _ANSIBLE_RE.search(text):
        kind = "ansible"
    if re.match(r"#cloud-config", text):
        kind = "cloud-init"
    parsed = ParsedInput(text, kind, invocations, notes, subcalls)
    if not invocations and kind == "ansible":
        tasks = len(re.findall(r"^[ \t]*-[ \t]+name[ \t]*:", text, re.M))
        srcs = sorted({_unmask(m.group(1)).strip("\"'") for m in _SRC_RE.finditer(text)} - {""})
        parsed.seen = (
            f"read as an Ansible task list: {tasks} named task(s), no shell/command task "
            "runs the validator"
        )
        parsed.hint = (
            f"audit the files its template/copy tasks install ({', '.join(srcs)})"
            if srcs
            else "audit the start script or unit the role installs"
        ) + ", or pass the command line on stdin (FILE '-')"
    elif not invocations:
        shown = ", ".join(sorted(set(images))) or "none"
        parsed.seen = (
            f"read as {kind} YAML: {len(values)} command/args/entrypoint value(s), images: {shown}"
        )
        parsed.hint = (
            "a service without command: runs its image's entrypoint; audit the script that "
            "entrypoint runs, or pass the command line on stdin (FILE '-')"
        )
    if masked is not None:
        unmask_parsed(parsed, masked, text)
    return parsed


_SRC_RE = re.compile(r"^[ \t]*src[ \t]*:[ \t]*(\S+)", re.M)

# Helm charts keep the validator's flags as a map in values.yaml (agaveArgs: {ledger: ...})
_VALUES_MAP_RE = re.compile(r"^(agave|solana|validator)[\w-]*args$", re.I)


def _values_map(
    text: str, lines: list[tuple[int, str]], n: int, indent: int, key: str, key_at: int
) -> tuple[Invocation | None, int]:
    """``agaveArgs:`` with ``flag: value`` children: the argv the chart renders from it.

    ``true`` gives the bare flag, ``false``/``null``/``[]`` leave it out, a list repeats it.
    """
    binary = "solana-validator" if key.lower().startswith("solana") else "agave-validator"
    head = Word(binary, key_at, key_at + len(key), _line(text, key_at), "values map")
    argv: list[Word] = []
    child_indent: int | None = None
    k = n + 1
    flag: Word | None = None
    while k < len(lines):
        start, line = lines[k]
        if not line.strip() or line.lstrip().startswith("#"):
            k += 1
            continue
        ind = len(line) - len(line.lstrip(" "))
        if ind <= indent:
            break
        item = re.match(r"^[ \t]*-[ \t]+(.*?)[ \t]*$", line)
        if item and flag is not None and (child_indent is None or ind >= child_indent):
            at = start + item.start(1)
            argv.extend([flag, _scalar_word(text, at, _strip_comment(item.group(1)))])
            k += 1
            continue
        m = re.match(r"^([ \t]*)([A-Za-z0-9][\w-]*)[ \t]*:(?:[ \t]+(.*))?$", line)
        if m is None:
            k += 1
            continue
        child_indent = child_indent if child_indent is not None else ind
        if ind != child_indent:
            k += 1
            continue
        name_at = start + m.start(2)
        flag = Word(f"--{m.group(2)}", name_at, name_at + len(m.group(2)), k + 1, "values map")
        value = _strip_comment(m.group(3) or "").strip()
        if value in ("true", "True", "yes"):
            argv.append(flag)
        elif value and value not in ("false", "False", "no", "null", "~", "[]", "{}", '""'):
            argv.extend([flag, _scalar_word(text, start + m.start(3), value)])
        k += 1
    if not argv:
        return None, k
    return Invocation(head, argv, head.line, False, [], f"values map {key}"), k


def _words_of(sub: ParsedInput, raw: str) -> list[Word]:
    """The words of a one-line command as read by the shell reader (any command, not only ours)."""
    if sub.invocations:
        inv = sub.invocations[0]
        return [inv.binary, *inv.argv]
    from agave_perf.tune.flags._parse import _Lexer

    lexer = _Lexer(raw)
    env = _Env()
    words: list[Word] = []
    for cmd in lexer.run():
        for rawword in cmd.words:
            words.extend(env.expand(rawword, 0))
    return words


def _script_block(btext: str, offsets: list[int], text: str) -> ParsedInput:
    """A script (or unit) held in a YAML block: read it, spans mapped back into the file."""
    unit = is_systemd_unit(btext)
    sub = parse_systemd(btext) if unit else parse_shell(btext, base=0, env=_Env())
    return remap(sub, offsets, text, base=0, line0=0)


# ------------------------------------------------------------------------------ Dockerfile


_DOCKER_RE = re.compile(r"^[ \t]*(ENTRYPOINT|CMD|ENV)[ \t]+", re.I | re.M)


def is_dockerfile(text: str) -> bool:
    """True when the text looks like a Dockerfile."""
    return bool(re.search(r"^[ \t]*FROM[ \t]+\S", text, re.I | re.M)) and bool(
        re.search(r"^[ \t]*(CMD|ENTRYPOINT|RUN)\b", text, re.I | re.M)
    )


def _docker_instruction_end(text: str, start: int) -> int:
    """End of an instruction's value (``\\`` continues it onto the next line)."""
    i = start
    while True:
        eol = text.find("\n", i)
        if eol < 0:
            return len(text)
        if text[i:eol].rstrip().endswith("\\"):
            i = eol + 1
            continue
        return eol


def parse_dockerfile(text: str, masked: Masked | None = None) -> ParsedInput:
    """ENTRYPOINT and CMD (the last of each counts), exec or shell form; ENV sets variables."""
    env = _Env()
    entry: list[Word] | None = None
    cmd: list[Word] | None = None
    shell_forms: list[tuple[int, int]] = []
    for m in _DOCKER_RE.finditer(text):
        kw = m.group(1).upper()
        end = _docker_instruction_end(text, m.end())
        body = text[m.end() : end]
        if kw == "ENV":
            for k, v in re.findall(r"([A-Za-z_]\w*)=(\"[^\"]*\"|\S+)", body):
                env.scalars[k] = v.strip('"')
            continue
        if body.lstrip().startswith("["):
            got = _json_list(text, m.end() + body.index("["))
            words = got[0] if got else []
            if kw == "ENTRYPOINT":
                entry = words
            else:
                cmd = words
        else:
            shell_forms.append((m.end(), end))
            if kw == "ENTRYPOINT":
                entry = []
            else:
                cmd = []
    invocations: list[Invocation] = []
    notes: list[Note] = []
    subcalls = 0
    argv = [*(entry or []), *(cmd or [])]
    inv, nested = _invocation_of(argv, text, "Dockerfile exec form", env)
    if inv is not None:
        invocations.append(inv)
    if nested is not None:
        invocations.extend(nested.invocations)
        notes.extend(nested.notes)
    for start, end in shell_forms:
        # shell form: /bin/sh -c "VALUE"
        sub = parse_shell(text[start:end], base=start, env=env, line0=_line(text, start) - 1)
        for i2 in sub.invocations:
            i2.form = "Dockerfile shell form"
        invocations.extend(sub.invocations)
        notes.extend(sub.notes)
        subcalls += sub.subcommand_calls
    parsed = ParsedInput(text, "dockerfile", invocations, notes, subcalls)
    if not invocations:
        parsed.seen = "read as a Dockerfile: ENTRYPOINT/CMD run no validator directly"
        parsed.hint = "audit the script the ENTRYPOINT runs (e.g. the start script COPY'd in)"
    if masked is not None:
        unmask_parsed(parsed, masked, text)
    return parsed


# ------------------------------------------------------------------------------ Nix


def is_nix(text: str) -> bool:
    """True when the text looks like a Nix expression (a NixOS module or configuration)."""
    return bool(
        re.search(r"^\s*\{[^}]*\b(config|pkgs|lib)\b[^}]*\}\s*:", text, re.M)
        or re.search(r"\bsystemd\.services\b|\bserviceConfig\s*=|\bmkOption\b|\bmkIf\b", text)
    )


@dataclass
class _NixString:
    start: int  # offset of the content
    end: int
    indented: bool
    in_list: bool


def _nix_strings(text: str) -> list[_NixString]:
    """Every Nix string literal (content spans), skipping comments and nested ``${}``."""
    out: list[_NixString] = []
    i = 0
    depth_list = 0
    list_stack: list[int] = []
    while i < len(text):
        c = text[i]
        if c == "#":
            eol = text.find("\n", i)
            i = len(text) if eol < 0 else eol
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = len(text) if end < 0 else end + 2
            continue
        if c == "[":
            list_stack.append(i)
            depth_list += 1
        elif c == "]" and list_stack:
            list_stack.pop()
            depth_list -= 1
        if c == '"' or text.startswith("''", i):
            indented = c != '"'
            j = i + (2 if indented else 1)
            content = j
            while j < len(text):
                if indented and text.startswith("'''", j):
                    j += 3
                    continue
                if indented and text.startswith("''$", j):
                    j += 3
                    continue
                if indented and text.startswith("''\\", j):
                    j += 3
                    continue
                if indented and text.startswith("''", j):
                    break
                if not indented and text[j] == "\\":
                    j += 2
                    continue
                if not indented and text[j] == '"':
                    break
                if text.startswith("${", j):
                    j = _skip_braces(text, j + 1)
                    continue
                j += 1
            out.append(_NixString(content, j, indented, bool(list_stack)))
            i = j + (2 if indented else 1)
            continue
        i += 1
    return out


def _skip_braces(text: str, i: int) -> int:
    """From ``text[i] == '{'`` to just after its matching ``}``."""
    depth = 0
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def _mask_nix(text: str) -> str:
    """Make every ``${expr}`` one word (same length), except ``${name}`` (a shell-like variable)."""
    out = list(text)
    for m in re.finditer(r"\$\{", text):
        end = _skip_braces(text, m.start() + 1)
        inner = text[m.start() + 2 : end - 1]
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", inner):
            continue
        for k in range(m.start(), end):
            out[k] = text[k].translate(_MASK)
    return "".join(out)


def _nix_bindings(text: str) -> dict[str, str]:
    """``name = "string";`` bindings (so ``${validatorCmd}`` can name the binary)."""
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r"\b([A-Za-z_][\w-]*)\s*=\s*\"([^\"\n]*)\"\s*;", text)
    }


_NIX_RUN_ATTRS = frozenset(["ExecStart", "script", "preStart", "postStart", "command", "text"])


def parse_nix(text: str) -> ParsedInput:
    """A NixOS module or configuration: the validator's command in a Nix string or list."""
    masked = _mask_nix(text)
    env = _Env()
    for name, value in _nix_bindings(text).items():
        if "${" not in value or VALIDATOR_WORD_RE.search(value):
            env.scalars[name] = _unmask(_mask_nix(value))
    invocations: list[Invocation] = []
    notes: list[Note] = []
    subcalls = 0
    strings = _nix_strings(text)
    consumed: set[int] = set()
    for idx, st in enumerate(strings):
        content = masked[st.start : st.end]
        expanded = _unmask(content)
        names_validator = VALIDATOR_WORD_RE.search(content) or any(
            f"${{{n}}}" in expanded and VALIDATOR_WORD_RE.search(v) for n, v in env.scalars.items()
        )
        if not names_validator or idx in consumed:
            continue
        line0 = _line(text, st.start) - 1
        sub = parse_shell(content, base=st.start, env=env, line0=line0)
        attr = re.search(r"([\w.]+)\s*=\s*(?:''|\")?$", text[max(0, st.start - 60) : st.start])
        runs = attr is not None and attr.group(1).split(".")[-1] in _NIX_RUN_ATTRS
        # a bare name in a string ("hostName = \"solana-validator\"") is not a command
        sub.invocations = [i for i in sub.invocations if i.argv or runs]
        if sub.invocations and not (st.in_list and len(sub.invocations[0].argv) == 0):
            for inv in sub.invocations:
                inv.form = "Nix string"
            invocations.extend(sub.invocations)
            notes.extend(sub.notes)
            subcalls += sub.subcommand_calls
            continue
        if st.in_list:
            listed = _nix_list(text, masked, strings, idx, env, consumed)
            if listed is not None:
                invocations.append(listed)
    parsed = ParsedInput(text, "nix", invocations, notes, subcalls)
    for inv in parsed.invocations:
        inv.binary = replace(inv.binary, text=_unmask(inv.binary.text))
        inv.argv = [
            replace(
                a,
                text=_unmask(a.text),
                origin="template" if _unmask(a.text) != a.text else a.origin,
            )
            for a in inv.argv
        ]
    if not invocations:
        parsed.seen = f"read as Nix: {len(strings)} string(s), none runs a validator"
        parsed.hint = (
            "if the module builds the command from options, audit the generated script "
            "(nix eval / systemctl cat) or pass the command line on stdin (FILE '-')"
        )
    return parsed


_NIX_CONDITIONAL = re.compile(r"(?:lib\.)?(?:optionals?|optionalString|mkIf)")
_NIX_TOKEN = re.compile(r"\+\+|\([^()]*\)|[\w.${}\-]+|.")


def _nix_list(
    text: str, masked: str, strings: list[_NixString], idx: int, env: _Env, consumed: set[int]
) -> Invocation | None:
    """``[ "${cmd}" "--ledger" cfg.ledger ] ++ optionals c [ ... ]``: one argv from the lists."""
    first = strings[idx]
    content = masked[first.start : first.end]
    ref = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", content)
    shown = env.scalars.get(ref.group(1), "") if ref else _unmask(content)
    if not VALIDATOR_RE.match(_command_name(shown)):
        return None
    head = Word(
        shown,
        first.start,
        first.end,
        _line(text, first.start),
        origin="literal" if not ref else f"${ref.group(1)}",
        in_list=True,
    )
    # the attribute's expression ends at the first ';' outside brackets and strings
    str_at = {s.start - 1: (k, s) for k, s in enumerate(strings) if not s.indented}
    words: list[Word] = []
    depth = 1
    cond = ""
    pending = ""  # a condition read after optionals/mkIf, for the next list or string
    expect_cond = False
    i = first.end + 1
    while i < len(masked):
        c = masked[i]
        if c in " \t\n":
            i += 1
            continue
        if c == "#":
            eol = masked.find("\n", i)
            i = len(masked) if eol < 0 else eol
            continue
        if c == ";" and depth <= 0:
            break
        if c == "[":
            depth += 1
            cond, pending = pending, ""
            i += 1
            continue
        if c == "]":
            depth -= 1
            cond = ""
            i += 1
            continue
        if i in str_at:
            k, s = str_at[i]
            consumed.add(k)
            here = cond or pending
            for w in _split_nix_string(masked[s.start : s.end], s.start, text):
                words.append(replace(w, condition=here, in_list=True))
            pending = ""
            i = s.end + 1
            continue
        m = _NIX_TOKEN.match(masked, i)
        tok = m.group(0) if m else c
        if _NIX_CONDITIONAL.fullmatch(tok):
            expect_cond = True
        elif expect_cond:
            pending, expect_cond = f"{_unmask(tok)}", False
        elif depth > 0 and tok != "++" and re.match(r"[\w(]", tok):
            # a value from the module's options: shown as written, never guessed
            words.append(
                Word(
                    _unmask(tok),
                    i,
                    i + len(tok),
                    _line(text, i),
                    "template",
                    condition=cond,
                    in_list=True,
                )
            )
        i += len(tok)
    return Invocation(head, words, head.line, "jito" in head.text.lower(), [], "Nix list")


def _split_nix_string(content: str, base: int, text: str) -> list[Word]:
    """The shell words of one Nix string inside an argument list."""
    from agave_perf.tune.flags._parse import _Lexer

    lexer = _Lexer(content, line0=_line(text, base) - 1)
    env = _Env()
    out: list[Word] = []
    for cmd in lexer.run():
        for raw in cmd.words:
            out.extend(env.expand(raw, base))
    return out


# ------------------------------------------------------------------------------ dispatch


def read(text: str, name: str = "") -> ParsedInput:
    """Read any supported form; the caller has already normalised line endings."""
    lower = name.lower()
    template = has_template(text) or lower.endswith((".j2", ".jinja", ".jinja2", ".tmpl", ".tpl"))
    masked = mask_templates(text) if template else None
    body = masked.text if masked is not None else text
    if lower.endswith(".nix") or (not masked and not text.startswith("#!") and is_nix(text)):
        return parse_nix(text)
    base_name = lower.rsplit("/", 1)[-1]
    if base_name.startswith(("dockerfile", "containerfile")) or (
        not text.startswith("#!") and is_dockerfile(body)
    ):
        return parse_dockerfile(body, masked) if masked else parse_dockerfile(text)
    if lower.endswith((".yml", ".yaml", ".yml.j2", ".yaml.j2")) or _looks_yaml(body):
        return parse_yaml(body, masked) if masked else parse_yaml(text)
    if is_systemd_unit(body) and not text.startswith("#!"):
        parsed = parse_systemd(body, masked.skip_lines if masked else frozenset())
        if masked is not None:
            # systemd: template lines between continuations are skipped as the unit has them
            parsed = unmask_parsed(parsed, masked, text)
            parsed.kind = f"{masked.dialect} template of a systemd unit"
        return parsed
    parsed = parse_shell(
        body,
        skip_lines=masked.skip_lines if masked else frozenset(),
        original=text if masked else "",
        condition_at=(lambda pos: _region_at(masked, pos)[0]) if masked else None,
    )
    if masked is not None:
        parsed = unmask_parsed(parsed, masked, text)
        parsed.kind = f"{masked.dialect} template of a shell script"
    return parsed


def _looks_yaml(text: str) -> bool:
    if text.startswith("#!") or is_systemd_unit(text):
        return False
    if text.startswith("#cloud-config"):
        return True
    keys = {
        _ANSIBLE_FQCN.sub("", k)
        for k in re.findall(r"^[ \t]*(?:-[ \t]+)?([A-Za-z_][\w.-]*)[ \t]*:(?:[ \t]|$)", text, re.M)
    }
    return bool(
        {"services", "apiVersion", "containers", "spec", "image"} & keys
        or (len(keys) >= 3 and {"command", "args", "entrypoint", "shell"} & keys)
        or (len(keys) >= 3 and _ANSIBLE_RE.search(text))
    )
