"""Find the validator invocation in a start script, systemd unit or command line.

The reader is a small shell lexer, not a shell: it knows what operators write in
validator start scripts (``\\`` continuations, comments, quotes, ``$VAR`` and
``${VAR:-x}`` with assignments made earlier, arrays spliced with ``"${ARGS[@]}"``,
``exec``/``nohup``/``sudo -u``/``taskset``/``numactl`` prefixes, pipes,
redirections, ``&``) and systemd's ``ExecStart=`` lines. Every word keeps the span
of source text it came from, so ``--fix`` can rewrite exactly that text.

Where bash would do something the operator surely did not mean — a comment line
between continuation lines ends the command; so do a space after the final ``\\`` and a
line without its ``\\`` before more ``--flag`` lines — the reader follows the intent and
records a :class:`Note`, an error: bash really runs the command without the lines after it.

Here-documents are read as the scripts they write; templates, Nix, YAML and Dockerfiles
are found by :mod:`._forms` and handed back here. Why a hand-written reader and not a
grammar (tree-sitter-bash, jinja2's lexer), measured by ``benchmarks/flags_parse.py`` on
the fixtures: tree-sitter parses a file in ~0.07 ms against ~0.35 ms here (0.2x, on a
loaded machine), both far below what a user notices, but it found the invocation in 33 of 56
fixtures — its bash grammar
has no idea of unit files, templates, Nix or YAML, treats here-document bodies as text, and
its nodes still need quote removal, variable and array expansion and span bookkeeping, which
is most of this module. jinja2's lexer tokenises all 6 template fixtures (~0.1 ms), but
reads Helm's Go templates as Jinja (``{{- if }}`` is no block to it), and the shell between
its tokens still needs this reader. Masking templates to
same-length text keeps every offset exact, which is what ``--fix`` and line:column need.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace

VALIDATOR_RE = re.compile(r"^(agave|solana)-validator$")

# commands that run the next command (possibly after their own options)
WRAPPERS = frozenset(
    [
        "exec",
        "nohup",
        "time",
        "command",
        "builtin",
        "setsid",
        "stdbuf",
        "nice",
        "ionice",
        "chrt",
        "taskset",
        "numactl",
        "sudo",
        "doas",
        "env",
        "runuser",
        "cgexec",
        "systemd-run",
        "prlimit",
        "screen",
        "start-stop-daemon",
        "then",
        "do",
        "{",
        "else",
        "!",
        "eval",
    ]
)
SUBCOMMANDS = frozenset(
    [
        "exit",
        "authorized-voter",
        "contact-info",
        "repair-shred-from-peer",
        "repair-whitelist",
        "init",
        "monitor",
        "plugin",
        "set-identity",
        "set-log-filter",
        "staked-nodes-overrides",
        "wait-for-restart-window",
        "set-public-address",
        "manage-block-production",
        "blockstore",
        "bam",
        "block-engine",
        "relayer",
        "shred-receiver-address",
        "shred-retransmit-receiver-address",
        "runtime-plugin",
        "help",
    ]
)
# commands whose ``-c STRING`` argument is a command line to read (``su USER -c "..."`` too)
_COMMAND_STRING_RUNNERS = frozenset(["bash", "sh", "dash", "zsh", "su"])
_ASSIGN_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\+?)=")


@dataclass(frozen=True)
class Word:
    """One argument after quote removal and expansion, with its source span."""

    text: str
    start: int
    end: int
    line: int
    origin: str = "literal"  # literal, "$NAME" (a variable), "template" (a {{ value }})
    col: int = 0  # 1-based column of ``start`` in the original file (0: not known)
    condition: str = ""  # the template conditional(s) the word sits in, as written
    # (if-chain id, branch index) of every enclosing conditional: two words in different
    # branches of one chain are never both passed
    branch: tuple[tuple[int, int], ...] = ()
    in_list: bool = False  # an item of a YAML/JSON/Nix list (deleting it needs its comma)
    set_at: int = 0  # for a word from a variable: the line of its assignment (0: not known)

    @property
    def fixable(self) -> bool:
        """True when the span holds exactly this word, so it can be rewritten in place."""
        return self.origin == "literal"

    def exclusive_with(self, other: Word) -> bool:
        """True when the two words can never both be rendered: different branches of one
        conditional, or conditionals testing one variable for two different values."""
        mine = dict(self.branch)
        if any(i in mine and mine[i] != b for i, b in other.branch):
            return True
        a, b = _equalities(self.condition), _equalities(other.condition)
        return any(name in b and b[name] != value for name, value in a.items())


_TAG_RE = re.compile(r"\{%-?\s*(?:el)?if\s+(.*?)-?%\}")
_EQ_RE = re.compile(r"^\(?\s*([A-Za-z_][\w.]*)\s*==\s*(['\"])(.*?)\2\s*\)?$")


def _equalities(condition: str) -> dict[str, str]:
    """``{% if x == 'A' %}`` tags of a condition as {x: 'A'} (tags with and/or/not ignored)."""
    out: dict[str, str] = {}
    for m in _TAG_RE.finditer(condition):
        test = m.group(1).strip()
        eq = _EQ_RE.match(test)
        if eq and not re.search(r"\b(and|or|not)\b", test):
            out[eq.group(1)] = eq.group(3)
    return out


@dataclass(frozen=True)
class Note:
    """Something the reader noticed while parsing (a likely operator mistake)."""

    line: int
    message: str
    error: bool = False  # bash would not run what the operator wrote (not just a style note)
    # index of the command the note is about; kept only when that command runs the
    # validator (-1: about the file, always kept)
    command: int = -1
    # an exact text fix for --fix: (start, end, replacement), offsets into the file
    fix: tuple[int, int, str] | None = None


@dataclass
class Invocation:
    """One run of the validator: the binary word and the arguments after it."""

    binary: Word
    argv: list[Word]
    line: int
    jito_hint: bool = False
    wrapper: list[str] = field(default_factory=list)
    form: str = ""  # where it was found when not a plain command (heredoc, template, ...)

    @property
    def binary_name(self) -> str:
        """``agave-validator`` or ``solana-validator``."""
        return _command_name(self.binary.text)


@dataclass
class ParsedInput:
    """What was read: kind of input, the validator invocations found, and notes."""

    text: str
    kind: str  # shell | systemd | jinja ... | nix | compose | kubernetes | dockerfile | yaml
    invocations: list[Invocation]
    notes: list[Note]
    subcommand_calls: int = 0
    # for "no invocation found": what form was seen, and what to pass instead
    seen: str = ""
    hint: str = ""


# ------------------------------------------------------------------------------ lexer


@dataclass
class _Piece:
    kind: str  # lit | var | cmd (a command substitution, kept as text)
    text: str  # literal text, or variable name
    quoted: bool
    default: str | None = None  # ${X:-default}
    array_all: bool = False  # ${X[@]}


@dataclass
class _RawWord:
    pieces: list[_Piece]
    start: int
    end: int
    line: int

    @property
    def literal(self) -> str | None:
        """The text if the word has no expansions."""
        if all(p.kind == "lit" for p in self.pieces):
            return "".join(p.text for p in self.pieces)
        return None


@dataclass
class _RawCommand:
    words: list[_RawWord]
    assigns_array: list[tuple[str, bool, list[_RawWord]]] = field(default_factory=list)
    terminator: str = ""  # the operator that ended it ("" at the end of the text)
    # the shell conditionals (if/elif/else, case arms) the command runs in: branch ids as
    # for template conditionals (negative chain ids), and their tests as written
    branch: tuple[tuple[int, int], ...] = ()
    condition: str = ""


_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-]")


class _Lexer:
    """Splits shell text into simple commands of raw words."""

    def __init__(self, text: str, *, systemd: bool = False, line0: int = 0) -> None:
        self.s = text
        self.line0 = line0
        self.systemd = systemd
        self.notes: list[Note] = []
        self.commands: list[_RawCommand] = []
        # open shell conditionals: (chain id, branch, "if"|"case", test as written)
        self._conds: list[tuple[int, int, str, str]] = []
        self._chains = 0
        self._pattern: list[str] = []  # a case arm's patterns read so far (a|b)
        self.quiet_trailing_blank = False
        # offsets of lines a template tag filled (masked to blanks): a continuation skips them
        self.skip_lines: frozenset[int] = frozenset()
        # here-document bodies: (command index, body start, body end, quoted delimiter, target)
        self.heredocs: list[tuple[int, int, int, bool, str]] = []
        self._redirect_target = ""
        self.original = ""  # the unmasked text, when template tags were blanked out
        # the template conditional(s) in force at an offset, as written (templates only)
        self.condition_at: Callable[[int], str] | None = None

    def line_of(self, pos: int) -> int:
        """1-based line number (in the whole file) of an offset in this text."""
        return self.line0 + self.s.count("\n", 0, pos) + 1

    # -- continuation handling --------------------------------------------------------
    def _at_continuation(self, i: int) -> int | None:
        """If a line continuation starts at i (``\\`` + optional blanks + newline), its end."""
        if self.s[i] != "\\":
            return None
        j = i + 1
        while j < len(self.s) and self.s[j] in " \t":
            j += 1
        if j < len(self.s) and self.s[j] == "\n":
            # blanks that were a template tag ("\\{{ end }}") are not blanks bash sees
            real_blank = not self.original or not self.original[i + 1 : j].strip()
            if j > i + 1 and not self.systemd and not self.quiet_trailing_blank and real_blank:
                # bash reads "\ " as an escaped blank: the command ends at this newline and
                # the next line runs as a command of its own
                self.notes.append(
                    Note(
                        self.line_of(i),
                        "whitespace after the line-continuation backslash: bash ends the "
                        "command here, so the flags on the lines after it are not passed to "
                        "the validator (remove the spaces); the rest is audited as if joined",
                        error=True,
                        fix=(i + 1, j, ""),
                    )
                )
            return self._skip_comment_lines(j + 1)
        return None

    def _skip_comment_lines(self, j: int) -> int:
        """After a continuation: skip comment-only lines the operator put between flags."""
        while True:
            if j in self.skip_lines:
                eol = self.s.find("\n", j)
                j = len(self.s) if eol < 0 else eol + 1
                continue
            k = j
            while k < len(self.s) and self.s[k] in " \t":
                k += 1
            if k < len(self.s) and (self.s[k] == "#" or (self.systemd and self.s[k] == ";")):
                eol = self.s.find("\n", k)
                eol = len(self.s) if eol < 0 else eol
                comment = self.s[k:eol].rstrip()
                nxt = eol + 1
                ahead = nxt
                while ahead in self.skip_lines:  # a template tag line is not in the script
                    eol2 = self.s.find("\n", ahead)
                    ahead = len(self.s) if eol2 < 0 else eol2 + 1
                m = re.match(r"[ \t]*(\S)", self.s[ahead:]) if ahead < len(self.s) else None
                continues = (
                    self.systemd or comment.endswith("\\") or (m is not None and m.group(1) == "-")
                )
                if not continues:
                    return j  # the command really ends; the newline after it ends it
                if not self.systemd:
                    # bash really ends the command at the comment (a '\\' at its end is
                    # part of the comment): the validator runs without the flags after it,
                    # as with a blank after the backslash; an error, not a style remark
                    self.notes.append(
                        Note(
                            self.line_of(k),
                            "comment line inside a continued command: bash ends the command "
                            "at this line, so the flags after it are not passed to the "
                            "validator (move the comment out of the command); the rest is "
                            "audited as if joined",
                            error=True,
                            command=len(self.commands),
                        )
                    )
                j = min(nxt, len(self.s))
                continue
            return j

    # -- words ------------------------------------------------------------------------
    def _read_var(self, i: int, quoted: bool) -> tuple[_Piece, int]:
        """Parse ``$NAME``/``${...}`` at i (s[i] == '$'); return the piece and end."""
        s = self.s
        if i + 1 < len(s) and s[i + 1] == "{":
            end = s.find("}", i + 2)
            if end < 0:
                return _Piece("lit", "$", quoted), i + 1
            inner = s[i + 2 : end]
            m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(\[[@*]\])?(?::?[-=](.*))?$", inner, re.S)
            if not m:
                return _Piece("lit", s[i : end + 1], quoted), end + 1
            return (
                _Piece("var", m.group(1), quoted, default=m.group(3), array_all=bool(m.group(2))),
                end + 1,
            )
        m = _VAR_NAME.match(s, i + 1)
        if not m:
            return _Piece("lit", "$", quoted), i + 1
        return _Piece("var", m.group(0), quoted), m.end()

    def _read_word(self, i: int) -> tuple[_RawWord, int]:
        s = self.s
        start = i
        pieces: list[_Piece] = []
        while i < len(s):
            c = s[i]
            if c in " \t\n;&|<>()":
                break
            cont = self._at_continuation(i)
            if cont is not None:
                # a continuation inside a word joins its halves (rare, but legal)
                i = cont
                if i >= len(s) or s[i] in " \t\n":
                    break
                continue
            if c == "\\":
                if i + 1 >= len(s):
                    # bash drops a backslash that ends the file (it continues into nothing)
                    i += 1
                    break
                pieces.append(_Piece("lit", s[i + 1], True))
                i += 2
            elif c == "'":
                end = s.find("'", i + 1)
                end = len(s) if end < 0 else end
                pieces.append(_Piece("lit", s[i + 1 : end], True))
                i = min(end + 1, len(s))
            elif c == '"':
                i = self._read_dquote(i + 1, pieces)
            elif c == "$" and i + 1 < len(s) and s[i + 1] == "'":
                end = s.find("'", i + 2)
                end = len(s) if end < 0 else end
                body = _ansi_c(s[i + 2 : end])
                pieces.append(_Piece("lit", body, True))
                i = min(end + 1, len(s))
            elif c == "`" or (c == "$" and s.startswith("$(", i)):
                piece, i = self._read_subst(i, quoted=False)
                pieces.append(piece)
            elif c == "$":
                piece, i = self._read_var(i, quoted=False)
                pieces.append(piece)
            else:
                j = i
                while j < len(s) and s[j] not in " \t\n;&|<>()\\'\"$`":
                    j += 1
                pieces.append(_Piece("lit", s[i:j], False))
                i = j
        return _RawWord(pieces, start, i, self.line_of(start)), i

    def _read_subst(self, i: int, quoted: bool) -> tuple[_Piece, int]:
        """``$(...)``, ``$((...))`` or a backtick command: kept as text, never run."""
        s = self.s
        if s[i] == "`":
            j = i + 1
            while j < len(s) and s[j] != "`":
                j += 2 if s[j] == "\\" else 1
            return _Piece("cmd", s[i : j + 1], quoted), min(j + 1, len(s))
        depth = 0
        j = i + 1
        while j < len(s):
            c = s[j]
            if c in "'\"":
                end = s.find(c, j + 1)
                j = len(s) if end < 0 else end + 1
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    return _Piece("cmd", s[i : j + 1], quoted), j + 1
            j += 1
        return _Piece("cmd", s[i:], quoted), len(s)

    def _read_dquote(self, i: int, pieces: list[_Piece]) -> int:
        s = self.s
        buf: list[str] = []
        while i < len(s) and s[i] != '"':
            c = s[i]
            if c == "\\" and i + 1 < len(s) and s[i + 1] in '"\\$`\n':
                if s[i + 1] != "\n":
                    buf.append(s[i + 1])
                i += 2
            elif c == "`" or s.startswith("$(", i):
                if buf:
                    pieces.append(_Piece("lit", "".join(buf), True))
                    buf = []
                piece, i = self._read_subst(i, quoted=True)
                pieces.append(piece)
            elif c == "$" and i + 1 < len(s) and (s[i + 1] == "{" or _VAR_NAME.match(s, i + 1)):
                if buf:
                    pieces.append(_Piece("lit", "".join(buf), True))
                    buf = []
                piece, i = self._read_var(i, quoted=True)
                pieces.append(piece)
            else:
                buf.append(c)
                i += 1
        if buf or not pieces:
            pieces.append(_Piece("lit", "".join(buf), True))
        return min(i + 1, len(s))

    # -- commands ---------------------------------------------------------------------
    def run(self) -> list[_RawCommand]:
        """Split the whole text into simple commands."""
        s = self.s
        cur = _RawCommand([])
        heredocs: list[tuple[str, bool, bool, str]] = []  # delimiter, strip tabs, quoted, target
        i = 0
        while i < len(s):
            c = s[i]
            if c in " \t":
                i += 1
                continue
            cont = self._at_continuation(i)
            if cont is not None:
                i = cont
                continue
            if c == "#" and (i == 0 or s[i - 1] in " \t\n;&|()"):
                eol = s.find("\n", i)
                i = len(s) if eol < 0 else eol
                continue
            if c == "\n" and cur.words and not heredocs:
                resumed = self._missing_continuation(i, cur.words[-1].end)
                if resumed is not None:
                    i = resumed
                    continue
            if c in "\n;&|()":
                cur.terminator = c
                self._end(cur)
                cur = _RawCommand([])
                if c == "\n" and heredocs:
                    i = self._skip_heredocs(i + 1, heredocs)
                    heredocs = []
                    self._redirect_target = ""
                    continue
                if c == "\n":
                    self._redirect_target = ""
                i += 2 if s.startswith(("&&", "||", ";;"), i) else 1
                continue
            hd = re.match(r"<<(-?)[ \t]*(\\?)(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\3", s[i:])
            if hd:
                quoted = bool(hd.group(2) or hd.group(3))
                heredocs.append((hd.group(4), hd.group(1) == "-", quoted, ""))
                i += hd.end()
                continue
            # redirections: [n]>file, [n]>>file, <file, 2>&1, &>file
            m = re.match(r"(\d*)(>>|>&|<&|&>|>|<)(\d+|-)?", s[i:])
            if m and (m.group(1) or c in "<>&"):
                i += m.end()
                if not m.group(3):
                    while i < len(s) and s[i] in " \t":
                        i += 1
                    target, i = self._read_word(i)
                    if ">" in m.group(2):
                        self._redirect_target = target.literal or s[target.start : target.end]
                continue
            word, i = self._read_word(i)
            lit = word.literal
            am = _ASSIGN_RE.match(lit or "") if not cur.words else None
            if (
                not cur.words
                and lit is None
                and word.pieces
                and word.pieces[0].kind == "lit"
                and not word.pieces[0].quoted
            ):
                am = _ASSIGN_RE.match(word.pieces[0].text)
            if am and i < len(s) and s[i] == "(" and word.end == i and lit == am.group(0):
                # NAME=( ... ) array assignment
                i, items = self._read_array(i + 1)
                cur.assigns_array.append((am.group(1), am.group(2) == "+", items))
                continue
            if word.pieces:
                cur.words.append(word)
                if len(cur.words) == 1 and lit in ("then", "do", "else", "{"):
                    # a keyword that starts a body: what follows it on the line is a
                    # command of its own (an array assignment after 'then' is one)
                    self._end(cur)
                    cur = _RawCommand([])
            elif i == word.start:
                i += 1  # nothing readable here: never stall
        self._end(cur)
        return self.commands

    def _missing_continuation(self, i: int, last_word_end: int) -> int | None:
        """A newline ending a command whose next line is a flag: the ``\\`` was forgotten.

        bash ends the command at such a newline and runs ``--flag`` as a command of its own
        (``command not found``), so the validator starts without the flags after it. In a
        template the line may end a conditional's branch: then only that rendering breaks.
        The reader records an error and goes on reading the flags as the operator meant.
        """
        s = self.s
        j = i + 1
        while j in self.skip_lines:  # template tag lines are not in the rendered script
            eol = s.find("\n", j)
            j = len(s) if eol < 0 else eol + 1
        m = re.compile(r"[ \t]*(-{1,2}[A-Za-z][\w-]*)").match(s, j)
        if m is None:
            return None
        condition = self.condition_at(i) if self.condition_at is not None else ""
        when = f"when {condition} is rendered, " if condition else ""
        ends = (
            "systemd ends ExecStart= here and ignores the next line (it has no '=')"
            if self.systemd
            else "bash ends the command here and runs the next line as a command of its own"
        )
        self.notes.append(
            Note(
                self.line_of(i),
                f"no line-continuation backslash at the end of this line: {when}{ends}, so "
                "the validator starts without the flags after it (end the line with ' \\'); "
                "the rest is audited as if joined",
                error=True,
                command=len(self.commands),
                # ' \\' after the line's last word; not when a comment ends the line
                fix=(i, i, " \\") if not s[last_word_end:i].strip() else None,
            )
        )
        return m.start(1)

    def _skip_heredocs(self, i: int, heredocs: list[tuple[str, bool, bool, str]]) -> int:
        """Skip here-document bodies (data, not commands), recording where each one is."""
        s = self.s
        for delim, strip_tabs, quoted, _ in heredocs:
            target = self._redirect_target  # cat <<EOF > FILE names its file after the <<
            body = i
            body_end = len(s)
            while i < len(s):
                eol = s.find("\n", i)
                eol = len(s) if eol < 0 else eol
                line = s[i:eol].lstrip("\t") if strip_tabs else s[i:eol]
                if line.rstrip(" ") == delim:
                    body_end = i
                    i = eol + 1
                    break
                i = eol + 1
            self.heredocs.append(
                (len(self.commands) - 1, body, min(body_end, len(s)), quoted, target)
            )
        return min(i, len(s))

    def _read_array(self, i: int) -> tuple[int, list[_RawWord]]:
        s = self.s
        items: list[_RawWord] = []
        while i < len(s):
            c = s[i]
            if c in " \t\n":
                i += 1
                continue
            cont = self._at_continuation(i)
            if cont is not None:
                i = cont
                continue
            if c == "#":
                eol = s.find("\n", i)
                i = len(s) if eol < 0 else eol
                continue
            if c == ")":
                return i + 1, items
            word, j = self._read_word(i)
            if j == i:  # a stray operator character inside the array
                i += 1
                continue
            items.append(word)
            i = j
        return i, items

    def _end(self, cmd: _RawCommand) -> None:
        if cmd.words or cmd.assigns_array:
            self._conditional(cmd)
            self.commands.append(cmd)

    def _conditional(self, cmd: _RawCommand) -> None:
        """Track if/elif/else/fi and case arms; give the command the branches it runs in.

        Two words in different branches of one conditional are never both passed, as with
        template conditionals (:meth:`Word.exclusive_with`).
        """
        first = cmd.words[0].literal if cmd.words else None
        top = self._conds[-1] if self._conds else None

        def test() -> str:
            rest = cmd.words[1:]
            return self.s[rest[0].start : rest[-1].end] if rest else ""

        if first == "if":
            cmd.branch, cmd.condition = self._in_force()
            self._chains += 1
            self._conds.append((-self._chains, 0, "if", test()))
            return
        if first in ("elif", "else") and top is not None and top[2] == "if":
            shown = test() if first == "elif" else f"not {top[3]}"
            self._conds[-1] = (top[0], top[1] + 1, "if", shown)
        elif first == "fi" and top is not None and top[2] == "if":
            self._conds.pop()
        elif first == "case" and len(cmd.words) >= 2:
            cmd.branch, cmd.condition = self._in_force()
            self._chains += 1
            subject = self.s[cmd.words[1].start : cmd.words[1].end]
            self._conds.append((-self._chains, -1, "case", subject))
            self._pattern = []
            return
        elif first == "esac" and top is not None and top[2] == "case":
            self._conds.pop()
        elif (
            top is not None
            and top[2] == "case"
            and len(cmd.words) == 1
            and not cmd.assigns_array
            and cmd.terminator in ("|", ")")
        ):
            word = cmd.words[0]
            self._pattern.append(self.s[word.start : word.end])
            if cmd.terminator == ")":
                subject = top[3].split(" matches ")[0]
                shown = f"{subject} matches {'|'.join(self._pattern)}"
                self._conds[-1] = (top[0], top[1] + 1, "case", shown)
                self._pattern = []
            cmd.words = []  # a pattern is not a command
        cmd.branch, cmd.condition = self._in_force()

    def _in_force(self) -> tuple[tuple[tuple[int, int], ...], str]:
        live = [c for c in self._conds if c[1] >= 0]
        return tuple((c[0], c[1]) for c in live), " and ".join(c[3] for c in live)


# ------------------------------------------------------------------------------ expansion


class _Env:
    """Scalar and array variables as the script assigns them, in order."""

    def __init__(self) -> None:
        self.scalars: dict[str, str] = {}
        self.arrays: dict[str, list[Word]] = {}
        self.unresolved: set[str] = set()
        self.set_at: dict[str, int] = {}  # the line each scalar was last assigned on

    def expand(self, raw: _RawWord, base: int) -> list[Word]:
        """Expand one raw word into zero or more words (unquoted variables split)."""
        lit = raw.literal
        if lit is not None:
            return [Word(lit, raw.start + base, raw.end + base, raw.line)]
        out: list[Word] = []
        buf = ""
        have = False
        origin = "literal"
        set_at = 0
        for p in raw.pieces:
            if p.kind == "lit":
                buf += p.text
                have = True
                continue
            if p.kind == "cmd":
                # a command substitution is not run: its text stands in for its output
                buf += p.text
                have = True
                origin = "$(command)"
                continue
            origin = f"${p.text}"
            if p.text in self.arrays and (p.array_all or not p.quoted):
                items = self.arrays[p.text] if p.array_all else self.arrays[p.text][:1]
                if buf and items:
                    out.append(
                        Word(buf, raw.start + base, raw.end + base, raw.line, origin, set_at=set_at)
                    )
                    buf, have = "", False
                out.extend(items)
                continue
            value = self.scalars.get(p.text)
            set_at = self.set_at.get(p.text, 0) if value is not None else 0
            if value is None:
                value = p.default if p.default is not None else None
            if value is None:
                value = f"${{{p.text}}}"  # unresolved: keep it visible
                if p.text[0].isalpha() or p.text[0] == "_":  # not $!, $?, $1...
                    self.unresolved.add(p.text)
            if p.quoted:
                buf += value
                have = True
            else:
                # $(command -v x) stands for one path: its text is not split
                subst = value.startswith(("$(", "`")) and value.endswith((")", "`"))
                parts = [value] if subst else value.split()
                if not parts:
                    continue
                buf += parts[0]
                have = True
                for extra in parts[1:]:
                    out.append(
                        Word(buf, raw.start + base, raw.end + base, raw.line, origin, set_at=set_at)
                    )
                    buf = extra
        if have:
            out.append(Word(buf, raw.start + base, raw.end + base, raw.line, origin, set_at=set_at))
        return out


_ANSI_C = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "f": "\f",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}


def _ansi_c(body: str) -> str:
    """Decode bash's $'...' escapes (unknown ones stay as written, as bash keeps them)."""
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\" or i + 1 >= len(body):
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        m = re.match(r"x([0-9a-fA-F]{1,2})|([0-7]{1,3})", body[i + 1 :])
        if nxt in _ANSI_C:
            out.append(_ANSI_C[nxt])
            i += 2
        elif m:
            out.append(chr(int(m.group(1), 16) if m.group(1) else int(m.group(2), 8)))
            i += 1 + m.end()
        else:
            out.append(c + nxt)
            i += 2
    return "".join(out)


def _basename(text: str) -> str:
    return os.path.basename(text.strip())


# VALIDATOR_CMD=$(command -v agave-validator) / $(which ...) / `type -P ...`: the variable holds
# the path of that binary, whatever the host's PATH makes of it
_LOOKUP_RE = re.compile(r"^(?:\$\(|`)\s*(?:command\s+-v|which|type\s+-[Pp])\s+([^\s)`]+)\s*[)`]$")


def _command_name(text: str) -> str:
    """The command a word runs: its basename, or the binary a ``$(command -v X)`` finds."""
    m = _LOOKUP_RE.match(text.strip())
    return _basename(m.group(1)) if m else _basename(text)


def parse_shell(
    text: str,
    *,
    base: int = 0,
    systemd: bool = False,
    env: _Env | None = None,
    line0: int = 0,
    crlf: bool = False,
    skip_lines: frozenset[int] = frozenset(),
    original: str = "",
    condition_at: Callable[[int], str] | None = None,
) -> ParsedInput:
    """Read shell text and return the validator invocations it runs.

    ``condition_at`` names the template conditional in force at an offset of ``text``.
    """
    lexer = _Lexer(text, systemd=systemd, line0=line0)
    lexer.original = original
    if condition_at is not None:
        lexer.condition_at = lambda pos: condition_at(pos + base)
    lexer.quiet_trailing_blank = crlf  # a CRLF file gets one note, not one per line
    lexer.skip_lines = frozenset(k - base for k in skip_lines)
    commands = lexer.run()
    env = env or _Env()
    invocations: list[Invocation] = []
    notes: list[Note] = []
    validator_commands: set[int] = set()  # commands that run the validator
    subcalls = 0
    bodies: dict[int, list[tuple[int, int, bool, str]]] = {}
    for idx, start, end, quoted, target in lexer.heredocs:
        bodies.setdefault(idx, []).append((start, end, quoted, target))

    def heredocs(idx: int) -> None:
        for start, end, quoted, target in bodies.get(idx, []):
            if not VALIDATOR_WORD_RE.search(text, start, end):
                continue
            sub = _heredoc(text, start, end, quoted=quoted, base=base, line0=line0, env=env)
            what = f"here-document written to {target}" if target else "here-document"
            for inv in sub.invocations:
                inv.form = what
            invocations.extend(sub.invocations)
            notes.extend(sub.notes)
            nonlocal_subcalls.append(sub.subcommand_calls)

    nonlocal_subcalls: list[int] = []
    heredocs(-1)
    for idx, cmd in enumerate(commands):
        if idx:
            heredocs(idx - 1)
        for name, append, items in cmd.assigns_array:
            words = _in_branch([w for raw in items for w in env.expand(raw, base)], cmd)
            env.arrays[name] = (env.arrays.get(name, []) if append else []) + words
        words = _in_branch([w for raw in cmd.words for w in env.expand(raw, base)], cmd)
        if not words:
            continue
        # assignments: plain, or after export/declare/local/readonly
        head = 1 if words[0].text in ("export", "declare", "local", "readonly", "typeset") else 0
        rest = words[head:]
        if rest and all(_ASSIGN_RE.match(w.text) for w in rest):
            for w in rest:
                m = _ASSIGN_RE.match(w.text)
                assert m is not None
                value = w.text[m.end() :]
                env.scalars[m.group(1)] = (
                    env.scalars.get(m.group(1), "") + value if m.group(2) else value
                )
                env.set_at[m.group(1)] = w.line
            continue
        if head and not rest:
            continue
        inv, nested = _find_invocation(words, text, base, systemd, env)
        if nested is not None:
            invocations.extend(nested.invocations)
            notes.extend(nested.notes)
            subcalls += nested.subcommand_calls
        if inv is None:
            continue
        validator_commands.add(idx)
        if _subcommand(inv.argv):
            subcalls += 1
            continue
        invocations.append(inv)
    if commands:
        heredocs(len(commands) - 1)
    # a note about one command (a forgotten continuation) matters only where it is the
    # validator's: any other command's broken line is not this audit's business
    notes = [
        replace(n, command=-1, fix=(n.fix[0] + base, n.fix[1] + base, n.fix[2]) if n.fix else None)
        for n in lexer.notes
        if n.command < 0 or n.command in validator_commands
    ] + notes
    subcalls += sum(nonlocal_subcalls)
    # only variables the validator's command uses matter (export PATH=...:$PATH does not)
    used = {
        w.origin[1:]
        for inv in invocations
        for w in [inv.binary, *inv.argv]
        if w.origin.startswith("$")
    } | {
        m.group(1)
        for inv in invocations
        for w in [inv.binary, *inv.argv]
        for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", w.text)
    }
    for name in sorted(env.unresolved & used):
        notes.append(Note(0, f"${name} is not set in this file; its value could not be checked"))
    if not systemd:
        env.unresolved = set()
    return ParsedInput(text, "systemd" if systemd else "shell", invocations, notes, subcalls)


def _in_branch(words: list[Word], cmd: _RawCommand) -> list[Word]:
    """Words of a command inside shell conditionals carry its branches and tests."""
    if not cmd.branch:
        return words
    return [
        replace(
            w, branch=w.branch + cmd.branch, condition=join_conditions(w.condition, cmd.condition)
        )
        for w in words
    ]


def join_conditions(a: str, b: str) -> str:
    """Two conditions that both hold, each named once."""
    if not a or b in a:
        return a or b
    if not b or a in b:
        return b or a
    return f"{a} and {b}"


VALIDATOR_WORD_RE = re.compile(r"(?<![A-Za-z0-9_-])(agave|solana)-validator(?![A-Za-z0-9_-])")


def _heredoc(
    text: str, start: int, end: int, *, quoted: bool, base: int, line0: int, env: _Env
) -> ParsedInput:
    """Audit a here-document body as the script it writes.

    With a quoted delimiter (``<<'EOF'``) the body is written as is: it is read as its own
    script. Unquoted, the writing shell removes ``\\``-newline, turns ``\\\\``, ``\\$``
    and ``\\```` into the bare character and expands ``$VAR`` with its own variables, so the
    body is read through that transformation (spans still point into the file).
    """
    body = text[start:end]
    if quoted and is_systemd_unit(body):
        unit = parse_systemd(body)
        return remap(unit, list(range(start, end + 1)), text, base=base, line0=line0)
    if quoted:
        return parse_shell(
            body, base=base + start, env=_Env(), line0=line0 + text.count("\n", 0, start)
        )
    chars: list[str] = []
    offsets: list[int] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body) and body[i + 1] == "\n":
            i += 2  # removed by the writing shell: the lines are joined
            continue
        if c == "\\" and i + 1 < len(body) and body[i + 1] in "\\$`":
            chars.append(body[i + 1])
            offsets.append(start + i + 1)
            i += 2
            continue
        chars.append(c)
        offsets.append(start + i)
        i += 1
    offsets.append(end)
    seg = "".join(chars)
    parsed = parse_shell(seg, base=0, env=env)
    return remap(parsed, offsets, text, base=base, line0=line0)


def remap(
    parsed: ParsedInput, offsets: list[int], text: str, *, base: int, line0: int
) -> ParsedInput:
    """Move the spans of words read from a transformed copy back into ``text``.

    ``offsets[i]`` is where character i of the copy came from in ``text``; ``base`` and
    ``line0`` place ``text`` in the file.
    """
    seg_lines = [0] + [k + 1 for k, ch in enumerate(parsed.text) if ch == "\n"]

    def word(w: Word) -> Word:
        if w.start < 0 or w.start >= len(offsets):
            return w
        s0 = offsets[w.start]
        e0 = offsets[w.end - 1] + 1 if w.end > w.start else s0
        return replace(w, start=base + s0, end=base + e0, line=line0 + text.count("\n", 0, s0) + 1)

    def line(n: int) -> int:
        if n <= 0 or n > len(seg_lines) or seg_lines[n - 1] >= len(offsets):
            return n
        return line0 + text.count("\n", 0, offsets[seg_lines[n - 1]]) + 1

    for inv in parsed.invocations:
        inv.binary = word(inv.binary)
        inv.argv = [word(a) for a in inv.argv]
        inv.line = inv.binary.line
    # a transformed copy's offsets are not the file's: its notes' fixes are dropped
    parsed.notes = [replace(n, line=line(n.line), fix=None) for n in parsed.notes]
    return parsed


def _subcommand(argv: list[Word]) -> str | None:
    """The subcommand (``exit``, ``monitor``...) this invocation runs, if any.

    ``--version``/``-V`` and ``--help``/``-h`` count too: they print and exit.

    A subcommand word is one that does not follow a flag (which would make it that
    flag's value): ``--ledger /mnt/ledger exit`` runs ``exit``.
    """
    for i, w in enumerate(argv):
        if w.text in ("--version", "--help"):
            return w.text  # clap prints and exits: the validator does not run
        if w.text not in SUBCOMMANDS and w.text not in ("-V", "-h"):
            continue
        prev = argv[i - 1].text if i else ""
        if not prev.startswith("-") or "=" in prev:
            return w.text
    return None


def _find_invocation(
    words: list[Word], text: str, base: int, systemd: bool, env: _Env
) -> tuple[Invocation | None, ParsedInput | None]:
    """Locate the validator binary among a simple command's words."""
    i = 0
    while i < len(words) and _ASSIGN_RE.match(words[i].text):
        i += 1
    if i >= len(words):
        return None, None
    first = _command_name(words[i].text)
    wrapper: list[str] = []
    if VALIDATOR_RE.match(first):
        idx = i
    elif first in WRAPPERS:
        idx = -1
        for j in range(i, len(words)):
            if VALIDATOR_RE.match(_command_name(words[j].text)):
                idx = j
                break
            if _basename(words[j].text) in _COMMAND_STRING_RUNNERS:
                return None, _nested(words[j:], text, base, systemd, env)
            wrapper.append(words[j].text)
        if idx < 0:
            return None, None
    elif first in _COMMAND_STRING_RUNNERS:
        return None, _nested(words[i:], text, base, systemd, env)
    else:
        return None, None
    binary = words[idx]
    hint = "jito" in binary.text.lower()
    argv = words[idx + 1 :]
    ssd = any(_basename(w) == "start-stop-daemon" for w in wrapper)
    if ssd and argv and argv[0].text == "--":
        argv = argv[1:]  # start-stop-daemon --exec BIN -- ARGS: '--' ends its own options
    return Invocation(binary, argv, binary.line, hint, wrapper), None


def _nested(
    words: list[Word], text: str, base: int, systemd: bool, env: _Env
) -> ParsedInput | None:
    """``bash -c '...'``: parse the command string (spans kept when it is a plain quote)."""
    for k, w in enumerate(words[:-1]):
        if w.text == "-c" or (w.text.startswith("-") and w.text.endswith("c") and len(w.text) <= 4):
            arg = words[k + 1]
            src = text[arg.start - base : arg.end - base] if arg.start >= 0 else ""
            if arg.fixable and len(src) >= 2 and src[0] == "'" and src[-1] == "'":
                inner = src[1:-1]
                return parse_shell(
                    inner, base=arg.start + 1, systemd=False, env=env, line0=arg.line - 1
                )
            parsed = parse_shell(arg.text, base=0, systemd=False, env=env)
            parsed.notes = [replace(n, fix=None) for n in parsed.notes]
            # spans inside a re-quoted string do not map to the file: mark them unfixable
            for inv in parsed.invocations:
                inv.binary = _unfixable(inv.binary, arg)
                inv.argv = [_unfixable(a, arg) for a in inv.argv]
            return parsed
    return None


def _unfixable(w: Word, outer: Word) -> Word:
    return Word(w.text, outer.start, outer.end, outer.line, origin="quoted command string")


# ------------------------------------------------------------------------------ systemd


_FLAG_LINE = re.compile(r"[ \t]+-{1,2}[A-Za-z][\w-]*")
_SYSTEMD_PREFIX = re.compile(r"^[-@+!:]*")


def parse_systemd(text: str, skip_lines: frozenset[int] = frozenset()) -> ParsedInput:
    """Read a systemd unit: every ``ExecStart=`` (continuations, prefixes, Environment=).

    ``skip_lines``: offsets of lines a template tag filled; they are not lines of the unit.
    """
    env = _Env()
    starts = [0]
    for ln in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(ln))

    def skipped(k: int) -> bool:
        return starts[k] in skip_lines

    invocations: list[Invocation] = []
    notes: list[Note] = []
    subcalls = 0
    pos = 0
    lines = text.splitlines(keepends=True)
    n = 0
    while n < len(lines):
        line = lines[n]
        start = pos
        stripped = line.lstrip()
        # gather a logical line (backslash continuations, comment lines skipped)
        end_n = n
        exec_start = stripped.partition("=")[0].strip() == "ExecStart"
        while True:
            while lines[end_n].rstrip().endswith("\\") and end_n + 1 < len(lines):
                end_n += 1
                # systemd skips comment lines inside a continued line (and template tag
                # lines are not in the rendered unit at all)
                while end_n + 1 < len(lines) and (
                    lines[end_n].lstrip().startswith(("#", ";")) or skipped(end_n)
                ):
                    end_n += 1
            # an indented --flag line after an ExecStart= line that lost its '\\': systemd
            # ignores it (no '='); the shell reader reports it and reads it as meant
            nxt = end_n + 1
            while exec_start and nxt < len(lines) and skipped(nxt):
                nxt += 1
            if not (exec_start and nxt < len(lines) and _FLAG_LINE.match(lines[nxt])):
                break
            end_n = nxt
        logical_end = start + sum(len(x) for x in lines[n : end_n + 1])
        pos = logical_end
        n = end_n + 1
        key, sep, _ = stripped.partition("=")
        key = key.strip()
        if not sep or stripped.startswith(("#", ";")):
            continue
        value_start = text.index("=", start) + 1
        body = text[value_start:logical_end]
        if key == "Environment":
            lexer = _Lexer(body, systemd=True, line0=text.count("\n", 0, value_start))
            for cmd in lexer.run():
                for raw in cmd.words:
                    for w in env.expand(raw, value_start):
                        m = _ASSIGN_RE.match(w.text)
                        if m:
                            env.scalars[m.group(1)] = w.text[m.end() :]
                            env.set_at[m.group(1)] = w.line
            continue
        if key != "ExecStart":
            continue
        prefix = _SYSTEMD_PREFIX.match(body.lstrip()).group(0)  # type: ignore[union-attr]
        lead = len(body) - len(body.lstrip())
        cmd_text = body[lead + len(prefix) :]
        cmd_base = value_start + lead + len(prefix)
        parsed = parse_shell(
            cmd_text,
            base=cmd_base,
            systemd=True,
            env=env,
            line0=text.count("\n", 0, cmd_base),
            skip_lines=skip_lines,
        )
        if "@" in prefix:
            # @: the second word is argv[0]; drop it so the arguments line up
            for inv in parsed.invocations:
                if inv.argv and VALIDATOR_RE.match(_basename(inv.argv[0].text)):
                    inv.argv = inv.argv[1:]
        if not parsed.invocations and not parsed.subcommand_calls:
            # e.g. ExecStart=/home/sol/bin/validator.sh
            words = cmd_text.split()
            if words:
                notes.append(
                    Note(
                        text.count("\n", 0, value_start) + 1,
                        f"ExecStart runs {words[0]}: audit that script for the validator's flags",
                    )
                )
        invocations.extend(parsed.invocations)
        notes.extend(parsed.notes)
        subcalls += parsed.subcommand_calls
    for name in sorted(env.unresolved):
        notes.append(Note(0, f"${name} is not set in this unit; its value could not be checked"))
    return ParsedInput(text, "systemd", invocations, notes, subcalls)


def is_systemd_unit(text: str) -> bool:
    """True when the text looks like a systemd unit file."""
    return bool(re.search(r"^\s*\[(Service|Unit|Install)\]\s*$", text, re.M)) or bool(
        re.search(r"^\s*ExecStart\s*=", text, re.M)
    )


def parse(text: str, name: str = "") -> ParsedInput:
    """Read a start script, systemd unit, template, Nix/YAML/Dockerfile or plain command line.

    ``name`` (the file's name, when known) helps tell the form apart.
    """
    from agave_perf.tune.flags._forms import has_template, read

    crlf = "\r\n" in text
    if crlf:
        # same length, so every span still points into the original text
        text = text.replace("\r\n", " \n")
    plain = not has_template(text) and not name.lower().endswith(
        (".nix", ".yml", ".yaml", ".j2", ".jinja", ".jinja2", ".tmpl", ".tpl")
    )
    other = _maybe_other_form(text, name)
    if plain and is_systemd_unit(text) and not text.startswith("#!") and not other:
        parsed = parse_systemd(text)
    elif plain and (text.startswith("#!") or not other):
        parsed = parse_shell(text, crlf=crlf)
    else:
        parsed = read(text, name)
    _set_columns(parsed, text)
    if crlf and parsed.kind == "shell":
        parsed.notes.insert(
            0,
            Note(
                1,
                "Windows (CRLF) line endings: bash keeps the \\r in words and breaks "
                "continuations; read as intended (convert the file with dos2unix)",
            ),
        )
    return parsed


def _maybe_other_form(text: str, name: str) -> bool:
    """Could this be a Nix, YAML or Dockerfile file rather than a script?"""
    from agave_perf.tune.flags._forms import _looks_yaml, is_dockerfile, is_nix

    base = os.path.basename(name.lower())
    if base.startswith(("dockerfile", "containerfile")):
        return True
    return is_nix(text) or is_dockerfile(text) or _looks_yaml(text)


def _set_columns(parsed: ParsedInput, text: str) -> None:
    """Give every word its 1-based column in the file (spans are offsets into it)."""

    def col(w: Word) -> Word:
        if w.start < 0 or w.start > len(text):
            return w
        return replace(w, col=w.start - text.rfind("\n", 0, w.start))

    for inv in parsed.invocations:
        inv.binary = col(inv.binary)
        inv.argv = [col(a) for a in inv.argv]


# ------------------------------------------------------------------------------ rendering


def quote(word: str) -> str:
    """Quote a word for a shell command line (no quotes when none are needed)."""
    return shlex.quote(word)
