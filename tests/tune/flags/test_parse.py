"""Reading start scripts, units and command lines the way operators write them."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agave_perf.tune.flags import parse
from agave_perf.tune.flags._parse import ParsedInput, Word

from .conftest import FIXTURES, fixture_text

PIECES = [
    *" \t\n\\'\"$#;&|()<>{}=-[]@*!abc/",
    "agave-validator",
    "--ledger",
    "${",
    "ExecStart=",
    "[Service]\n",
    "\r\n",
    "$'",
    "exec ",
    "X=1 ",
    "args=(",
    '"${args[@]}"',
]


def argv_of(parsed: ParsedInput, n: int = 0) -> list[str]:
    """The argument texts of the n-th invocation."""
    return [w.text for w in parsed.invocations[n].argv]


def source_of(text: str, w: Word) -> str:
    """The source text a word's span covers."""
    return text[w.start : w.end]


class TestShellScripts:
    def test_array_args_and_exec(self) -> None:
        """Arrays spliced with "${args[@]}" (and args+=) keep every word and its own span."""
        text = fixture_text("01_agave_array_exec.sh")
        p = parse(text)
        assert len(p.invocations) == 1
        argv = argv_of(p)
        assert argv[:2] == ["--identity", "/home/sol/validator-keypair.json"]
        assert argv.count("--known-validator") == 2
        assert argv.count("--entrypoint") == 2
        assert argv[-2:] == ["--wal-recovery-mode", "skip_any_corrupted_record"]
        kv = next(w for w in p.invocations[0].argv if w.text == "--known-validator")
        assert source_of(text, kv) == "--known-validator"
        assert kv.fixable
        ident = p.invocations[0].argv[1]
        assert ident.origin == "$IDENTITY"
        assert not ident.fixable

    def test_comment_lines_between_continuations(self) -> None:
        """Comment lines inside a continued command end it in bash: each is an error note, and
        the flags after it are still read, as the operator meant them."""
        p = parse(fixture_text("03_comments_between_continuations.sh"))
        argv = argv_of(p)
        assert "--rpc-port" in argv
        assert "--no-voting" in argv
        assert "--limit-ledger-size" in argv
        assert "--enable-rpc-transaction-history" not in argv  # commented out on purpose
        assert argv[-2:] == ["--log", "-"]  # the inline comment after it is dropped
        assert [n.line for n in p.notes] == [5, 8, 10]
        assert all("bash ends the command" in n.message and n.error for n in p.notes)

    def test_quoted_paths_with_spaces(self) -> None:
        """Double, single, --flag="..." and backslash-escaped spaces all give one word."""
        text = fixture_text("04_quoted_paths_with_spaces.sh")
        p = parse(text)
        argv = argv_of(p)
        assert "/home/sol/My Keys/validator-keypair.json" in argv
        assert "/mnt/ledger disk/ledger" in argv
        assert "/mnt/fast nvme/accounts" in argv
        assert "--log=/var/log/sol validator.log" in argv
        assert "/mnt/snap shots" in argv
        w = next(w for w in p.invocations[0].argv if w.text == "/mnt/ledger disk/ledger")
        assert source_of(text, w) == "'/mnt/ledger disk/ledger'"

    def test_environment_variables(self) -> None:
        """$VAR, ${VAR}, ${VAR:-x}, exported and nested assignments expand; unquoted ones split."""
        p = parse(fixture_text("05_env_vars.sh"))
        argv = argv_of(p)
        assert argv[:6] == [
            "--identity",
            "/home/sol/keys/validator-keypair.json",
            "--ledger",
            "/mnt/ledger",
            "--accounts",
            "/mnt/accounts",
        ]
        assert argv[6:10] == ["--rpc-port", "8899", "--rpc-bind-address", "127.0.0.1"]
        assert argv[-2:] == ["--no-voting", "--full-rpc-api"]  # $EXTRA_FLAGS word-split
        assert any("$LEDGER_SHREDS is not set" in n.message for n in p.notes)

    def test_wrappers_pipes_and_background(self) -> None:
        """nohup/taskset/numactl prefixes, 2>&1 | tee and & do not leak into the arguments."""
        p = parse(fixture_text("11_nohup_taskset_numactl_tee.sh"))
        inv = p.invocations[0]
        assert inv.binary.text == "/usr/local/bin/agave-validator"
        assert inv.wrapper[:3] == ["nohup", "taskset", "-c"]
        assert argv_of(p)[-2:] == ["--log", "-"]
        assert not any(n.message.startswith("$!") for n in p.notes)

    def test_sudo_and_subcommand_calls(self) -> None:
        """pkill and 'agave-validator ... wait-for-restart-window' are not the run invocation."""
        p = parse(fixture_text("12_sudo_and_subcommands.sh"))
        assert len(p.invocations) == 1
        assert p.subcommand_calls == 1
        assert p.invocations[0].binary.text == "/home/sol/bin/agave-validator"
        assert argv_of(p)[-1] == "--limit-ledger-size"  # >> file 2>&1 dropped

    def test_su_command_string_is_read(self) -> None:
        """'su sol -c "agave-validator ..."' (also after exec or sudo) runs the validator."""
        for line in (
            'su sol -c "agave-validator --ledger /mnt/ledger --log -"\n',
            "exec su - sol -c 'agave-validator --ledger /mnt/ledger --log -'\n",
        ):
            p = parse(line)
            assert argv_of(p) == ["--ledger", "/mnt/ledger", "--log", "-"], line

    def test_screen_and_start_stop_daemon_run_the_validator(self) -> None:
        """screen -dmS and an init script's start-stop-daemon --exec BIN -- ARGS are runs."""
        p = parse("screen -dmS sol agave-validator --ledger /l --log -\n")
        assert argv_of(p) == ["--ledger", "/l", "--log", "-"]
        p = parse(
            "/sbin/start-stop-daemon --start --chuid sol --exec /usr/bin/agave-validator -- "
            "--ledger /l --log -\n"
        )
        assert argv_of(p) == ["--ledger", "/l", "--log", "-"]

    def test_version_and_help_calls_are_not_the_run(self) -> None:
        """'agave-validator --version' (or -V, --help, -h) only prints and exits: not a run."""
        text = (
            "agave-validator --version\nagave-validator -V\nagave-validator --help\n"
            "agave-validator -h\nexec agave-validator --ledger /mnt/ledger --log -\n"
        )
        p = parse(text)
        assert len(p.invocations) == 1
        assert p.subcommand_calls == 4
        assert argv_of(p) == ["--ledger", "/mnt/ledger", "--log", "-"]

    def test_plain_command_line(self) -> None:
        """A one-line command is read as is, repeated flags included."""
        p = parse(fixture_text("13_plain_command_line.txt"))
        assert argv_of(p).count("--account-index") == 2

    def test_trailing_space_after_backslash(self) -> None:
        """A space after the final backslash is read as a continuation, with a note."""
        p = parse(fixture_text("15_trailing_space_after_backslash.sh"))
        assert "--ledger" in argv_of(p)
        assert p.notes[0].line == 3
        assert "whitespace after" in p.notes[0].message

    def test_short_flags(self) -> None:
        """-i X, -lX and -o - are kept as written."""
        p = parse(fixture_text("18_short_flags.sh"))
        assert argv_of(p)[:3] == ["-i", "/home/sol/id.json", "-l/mnt/ledger"]

    def test_if_and_loops(self) -> None:
        """Invocations inside if/then and while/do are found, each with its own line."""
        p = parse(fixture_text("20_if_then_restart_loop.sh"))
        assert [inv.line for inv in p.invocations] == [5, 8]
        assert [inv.binary_name for inv in p.invocations] == ["agave-validator", "solana-validator"]
        assert argv_of(p, 1)[argv_of(p, 1).index("--rpc-port") + 1] == "8899"

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("agave-validator --log 'a'\"b\"c\n", ["--log", "abc"]),
            ("agave-validator --log $'a\\tb'\n", ["--log", "a\tb"]),
            ('agave-validator --log "say \\"hi\\" \\$HOME"\n', ["--log", 'say "hi" $HOME']),
            ("X=1; agave-validator --rpc-port $X # c\n", ["--rpc-port", "1"]),
            ("agave-validator --ledger=/l && echo ok\n", ["--ledger=/l"]),
        ],
    )
    def test_quoting_edge_cases(self, text: str, expected: list[str]) -> None:
        """Adjacent quotes join, $'..' decodes, escapes in double quotes, ; and && end commands."""
        assert argv_of(parse(text)) == expected


class TestSystemdUnits:
    def test_multiple_execstart_with_environment(self) -> None:
        """The real ExecStart after an empty reset is read; Environment= fills ${VAR} and $VAR."""
        text = fixture_text("06_systemd_multiple_execstart.service")
        p = parse(text)
        assert p.kind == "systemd"
        assert len(p.invocations) == 1  # ExecStop's 'exit' call is not an ExecStart
        argv = argv_of(p)
        assert argv[argv.index("--ledger") + 1] == "/mnt/ledger"
        assert argv[argv.index("--rpc-port") + 1] == "8899"
        assert "--accounts" in argv  # after the comment line inside the continuation
        assert p.invocations[0].line == 18

    def test_at_prefix_drops_argv0(self) -> None:
        """ExecStart=@path name ...: the second word is argv[0], not an argument."""
        p = parse(fixture_text("07_systemd_at_prefix_jito.service"))
        assert argv_of(p)[0] == "--identity"
        assert p.invocations[0].jito_hint

    def test_bash_c_keeps_spans(self) -> None:
        """ExecStart=/bin/bash -c '...' is parsed inside, with spans pointing into the unit."""
        text = fixture_text("16_systemd_bash_c.service")
        p = parse(text)
        w = next(w for w in p.invocations[0].argv if w.text == "--rpc-threds")
        assert source_of(text, w) == "--rpc-threds"
        assert w.fixable

    def test_unit_that_runs_a_script(self) -> None:
        """A unit whose ExecStart is a script yields no invocation and a note naming the script."""
        p = parse(fixture_text("19_unit_runs_script.service"))
        assert p.invocations == []
        assert "/home/sol/bin/validator.sh" in p.notes[0].message


class TestSpans:
    @pytest.mark.parametrize(
        "name",
        [
            "02_solana_1_16_classic.sh",
            "09_misspelled_flags.sh",
            "10_removed_flags_on_3x.sh",
            "14_missing_value_duplicate_conflict.sh",
        ],
    )
    def test_literal_words_span_their_source(self, name: str) -> None:
        """Every literal, unquoted word's span covers exactly its text in the file."""
        text = fixture_text(name)
        for inv in parse(text).invocations:
            for w in [inv.binary, *inv.argv]:
                assert w.fixable
                assert source_of(text, w) == w.text


class TestAllFixtures:
    @pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir()))
    def test_fixable_words_unquote_to_their_text(self, name: str) -> None:
        """In every fixture, a fixable word's source span shell-unquotes to exactly its text."""
        text = fixture_text(name)
        words = [w for inv in parse(text).invocations for w in [inv.binary, *inv.argv]]
        # only the unit that runs a script, the service without command: and the Ansible
        # tasks that install files have none
        assert words or name.startswith(("19_", "46_", "52_"))
        for w in words:
            if w.fixable:
                assert shlex.split(source_of(text, w)) == [w.text]


class TestOddInputs:
    def test_crlf_line_endings(self) -> None:
        """A script saved with Windows line endings is read as intended, with one note."""
        text = "exec agave-validator \\\r\n  --ledger /l \\\r\n  --no-voting\r\n"
        p = parse(text)
        assert argv_of(p) == ["--ledger", "/l", "--no-voting"]
        assert len(p.notes) == 1
        assert "CRLF" in p.notes[0].message
        w = p.invocations[0].argv[2]
        assert source_of(text, w) == "--no-voting"

    def test_braces_and_functions(self) -> None:
        """Invocations inside { ...; } groups and function bodies are found."""
        text = "start() {\n  { exec agave-validator --ledger /l; }\n}\nstart\n"
        assert argv_of(parse(text)) == ["--ledger", "/l"]

    def test_heredocs_and_command_substitution(self) -> None:
        """A here-document body is read as the script it writes; $(..), `..` stay single words."""
        text = (
            "cat > /tmp/x <<-'END'\n\tagave-validator --bogus\nEND\n"
            'exec agave-validator --identity "$(pwd)/id.json" '
            '--expected-shred-version $(get "a b") --log `date +%F`.log '
            "--rpc-port $((8000 + 899)) --no-voting\n"
        )
        p = parse(text)
        assert len(p.invocations) == 2
        written = p.invocations.pop(0)
        assert written.form == "here-document written to /tmp/x"
        assert [w.text for w in written.argv] == ["--bogus"]
        assert written.line == 2
        assert argv_of(p) == [
            "--identity",
            "$(pwd)/id.json",
            "--expected-shred-version",
            '$(get "a b")',
            "--log",
            "`date +%F`.log",
            "--rpc-port",
            "$((8000 + 899))",
            "--no-voting",
        ]
        assert p.invocations[0].argv[1].origin == "$(command)"

    def test_forwarded_arguments(self) -> None:
        """exec agave-validator "$@" parses (the forwarded words are unknown, not flags)."""
        p = parse('exec agave-validator --ledger /l "$@"\n')
        assert argv_of(p)[:2] == ["--ledger", "/l"]

    @settings(max_examples=400, deadline=None)
    @given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join))
    def test_never_crashes(self, text: str) -> None:
        """Any mix of shell syntax parses without an exception, with spans inside the text."""
        for inv in parse(text).invocations:
            for w in inv.argv:
                assert 0 <= w.start <= w.end <= len(text) or w.start == -1
