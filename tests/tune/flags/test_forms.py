"""The forms real deployments use: arrays, here-documents, templates, Nix, YAML, Dockerfile."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agave_perf.errors import UsageError
from agave_perf.tune.flags import audit_text, fix, parse
from agave_perf.tune.flags._parse import Word
from tests.tune.flags.conftest import FIXTURES, fixture_text

# fixture -> (kind, binary's basename, flags that must be read, the form noted)
FORMS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "21_array_via_command_v.sh": ("shell", "agave-validator", ("--rpc-threads", "--no-voting"), ""),
    "22_array_which_typo.sh": ("shell", "agave-validator", ("--rpc-threds", "--no-voting"), ""),
    "23_cmd_array_first_word.sh": ("shell", "agave-validator", ("--private-rpc",), ""),
    "24_heredoc_unquoted.sh": ("shell", "agave-validator", ("--rpc-port", "--log"), "here-doc"),
    "25_heredoc_quoted_tabs.sh": ("shell", "agave-validator", ("--rpc-threds",), "here-doc"),
    "26_heredoc_sudo_tee.sh": ("shell", "agave-validator", ("--full-rpc-api",), "here-doc"),
    "27_heredoc_unit.sh": ("shell", "agave-validator", ("--no-voting",), "here-doc"),
    "28_ansible_start.sh.j2": ("jinja", "agave-validator", ("--known-validator",), ""),
    "29_ansible_rpc_types.sh.j2": ("jinja", "agave-validator", ("--private-rpc",), ""),
    "30_ansible_typo_in_if.sh.j2": ("jinja", "agave-validator", ("--rpc-port",), ""),
    "31_ansible_unit.service.j2": ("systemd unit", "agave-validator", ("--rpc-threads",), ""),
    "32_helm_start.tpl": ("go template", "agave-validator", ("--full-rpc-api",), ""),
    "33_helm_values.yaml": ("helm values", "agave-validator", ("--known-validator",), "values"),
    "34_nixos_execstart.nix": ("nix", "solana-validator", ("--limit-ledger-size",), "Nix"),
    "35_nixos_script.nix": ("nix", "agave-validator", ("--rpc-threds",), "Nix"),
    "36_nixos_module_list.nix": ("nix", "agave-validator", ("--rpc-threads",), "Nix list"),
    "37_compose_list.yml": ("compose", "agave-validator", ("--rpc-threds=8",), "YAML"),
    "38_compose_string.yml": ("compose", "solana-validator", ("--full-rpc-api",), "YAML"),
    "39_compose_folded.yaml": ("compose", "agave-validator", ("--limit-ledger-size",), ""),
    "40_k8s_args.yaml": ("kubernetes", "agave-validator", ("--no-voting",), "YAML"),
    "41_k8s_sh_c.yaml": ("kubernetes", "agave-validator", ("--no-voting",), ""),
    "42_k8s_configmap_script.yaml": ("kubernetes", "agave-validator", ("--private-rpc",), ""),
    "43_dockerfile_exec.Dockerfile": ("dockerfile", "agave-validator", ("--rpc-threds",), "exec"),
    "44_dockerfile_shell.Dockerfile": (
        "dockerfile",
        "agave-validator",
        ("--full-rpc-api",),
        "shell",
    ),
    "45_cloud_init.yaml": ("cloud-init", "agave-validator", ("--no-voting",), ""),
    "47_missing_continuation.sh": ("shell", "agave-validator", ("--private-rpc",), ""),
    "48_ansible_branch_no_continuation.sh.j2": (
        "jinja",
        "solana-validator",
        ("--ledger", "--no-voting"),
        "",
    ),
    "49_ansible_task_shell.yml": ("ansible", "agave-validator", ("--rpc-threds",), ""),
    "50_ansible_task_command_cmd.yml": ("ansible", "agave-validator", ("--full-rpc-api",), ""),
    "51_ansible_task_command_argv.yml": (
        "ansible",
        "agave-validator",
        ("--enable-rpc-transaction-histroy",),
        "YAML",
    ),
    "53_user_data_unquoted_heredoc.sh": ("shell", "agave-validator", ("--private-rpc",), "here"),
    "54_unit_with_subcommand_post.service": ("systemd", "agave-validator", ("--full-rpc-api",), ""),
    "55_k8s_env_references.yaml": ("kubernetes", "agave-validator", ("$(RPC_PORT)",), "YAML"),
    "56_nixos_concat_strings.nix": ("nix", "agave-validator", ("--rpc-threds",), "Nix list"),
    "57_function_local_array.sh": ("shell", "agave-validator", ("--entrypoint",), ""),
    "58_dockerfile_entrypoint_and_cmd.Dockerfile": (
        "dockerfile",
        "agave-validator",
        ("--no-votin",),
        "exec",
    ),
    "59_shell_if_case_branches.sh": ("shell", "agave-validator", ("--vote-account",), ""),
}


def words_of(name: str) -> list[Word]:
    """Every argument word of every invocation in a fixture."""
    return [w for inv in parse(fixture_text(name), name).invocations for w in inv.argv]


def at(text: str, w: Word) -> str:
    """The source text at a word's line:column (as far as the word's span reaches)."""
    line = text.split("\n")[w.line - 1]
    return line[w.col - 1 : w.col - 1 + (w.end - w.start)]


class TestForms:
    def test_at_least_25_new_fixtures(self) -> None:
        """The new forms come with at least 25 fixtures of their own."""
        assert len(FORMS) + 1 >= 25  # + the compose service without a command
        assert all((FIXTURES / name).is_file() for name in FORMS)

    @pytest.mark.parametrize("name", sorted(FORMS))
    def test_each_form_is_found_with_its_flags(self, name: str) -> None:
        """Every form is read as what it is, the validator found and its flags read."""
        kind, binary, flags, form = FORMS[name]
        parsed = parse(fixture_text(name), name)
        assert kind in parsed.kind
        assert len(parsed.invocations) == 1
        inv = parsed.invocations[0]
        assert inv.binary_name == binary
        texts = [w.text for w in inv.argv]
        for flag in flags:
            assert flag in texts
        assert form.lower() in inv.form.lower()

    @pytest.mark.parametrize("name", sorted(FORMS))
    def test_spans_point_into_the_original_file(self, name: str) -> None:
        """Each flag word's line:column and offsets point at that flag in the file as written."""
        text = fixture_text(name)
        checked = 0
        for w in words_of(name):
            if not w.text.startswith("--") or w.origin != "literal":
                continue
            src = text[w.start : w.end]
            assert w.text.split("=")[0] in src
            assert at(text, w) == src
            checked += 1
        assert checked or name.startswith("33_")  # values maps spell flags without "--"

    def test_values_map_spans_name_the_key(self) -> None:
        """A Helm values key becomes --key, its span on the key as written in values.yaml."""
        text = fixture_text("33_helm_values.yaml")
        flag = next(w for w in words_of("33_helm_values.yaml") if w.text == "--rpc-threds")
        assert text[flag.start : flag.end] == "rpc-threds"
        assert (flag.line, flag.col) == (15, 3)

    def test_boolean_values_give_bare_flags_and_false_leaves_them_out(self) -> None:
        """true is the bare flag, false is not passed, a list repeats the flag."""
        texts = [w.text for w in words_of("33_helm_values.yaml")]
        assert "--full-rpc-api" in texts
        assert "--only-known-rpc" not in texts
        assert texts.count("--known-validator") == 2


class TestVariablesAndArrays:
    def test_binary_through_command_v(self) -> None:
        """VALIDATOR_CMD=$(command -v agave-validator) then exec "$VALIDATOR_CMD" runs it."""
        inv = parse(fixture_text("21_array_via_command_v.sh")).invocations[0]
        assert inv.binary.text == "$(command -v agave-validator)"
        assert inv.binary_name == "agave-validator"

    def test_variable_value_shown_with_its_assignment(self) -> None:
        """$RPC_THREADS in the array is read as the value the script assigns (16)."""
        ws = words_of("21_array_via_command_v.sh")
        i = [w.text for w in ws].index("--rpc-threads")
        assert ws[i + 1].text == "16"
        assert ws[i + 1].origin == "$RPC_THREADS"
        assert ws[i + 1].set_at == 6

    def test_unset_variables_are_noted_only_where_the_validator_uses_them(self) -> None:
        """$PATH in an export and $NET in an if test are not the validator's: no note; an unset
        $LEDGER in its command is (each public script with 'export PATH' got a warning)."""
        text = (
            '#!/bin/bash\nexport PATH=/opt/bin:$PATH\nif [ "$NET" = a ]; then :; fi\n'
            "exec agave-validator --ledger $LEDGER --rpc-port 8899\n"
        )
        notes = [f.message for f in audit_text(text, profile="none").findings if f.code == "parse"]
        assert notes == ["$LEDGER is not set in this file; its value could not be checked"]

    def test_a_finding_on_a_variable_value_names_the_variable_and_its_line(self) -> None:
        """A bad value that came from $PORTS says so, with the line that set it: the operator
        edits the assignment, not the flag line."""
        text = (
            "#!/bin/bash\nPORTS=8000-8005\n"
            'exec agave-validator --ledger /l --dynamic-port-range "$PORTS"\n'
        )
        report = audit_text(text, profile="none")
        f = next(f for f in report.findings if f.code == "port-range-too-small")
        assert "($PORTS is '8000-8005', set on line 2)" in f.message

    def test_typo_in_array_append_is_an_error(self) -> None:
        """A misspelt flag appended with FLAGS+=( ) through `which` is an error at its line."""
        report = audit_text(fixture_text("22_array_which_typo.sh"), profile="none")
        bad = next(f for f in report.findings if f.flag == "--rpc-threds")
        assert bad.severity == "fail"
        assert (bad.line, bad.col) == (5, 9)


class TestShellConditionals:
    def test_if_elif_and_case_arms_are_exclusive(self) -> None:
        """--expected-genesis-hash in the if and elif branches, --rpc-port in two case arms:
        never both passed, so no duplicate (each was reported twice before)."""
        report = audit_text(fixture_text("59_shell_if_case_branches.sh"), profile="none")
        assert not [f for f in report.findings if f.code == "duplicate"]
        assert [f.flag for f in report.findings if f.severity == "fail"] == [
            "--enable-rpc-transaction-histroy"
        ]

    def test_words_name_the_shell_test_they_depend_on(self) -> None:
        """A flag appended inside a branch remembers the test, as written, and the arm."""
        ws: dict[str, Word] = {}
        for w in words_of("59_shell_if_case_branches.sh"):
            ws.setdefault(w.text, w)  # the first of each
        assert ws["--expected-genesis-hash"].condition == '[[ "$CLUSTER" == mainnet ]]'
        assert ws["--vote-account"].condition == '"$ROLE" matches voter'
        assert ws["--limit-ledger-size"].condition == ""

    def test_a_flag_outside_and_inside_an_if_is_a_duplicate(self) -> None:
        """Only different branches of one conditional are exclusive: outside + inside is not."""
        text = (
            'ARGS=(--rpc-port 1)\nif [ -n "$X" ]; then ARGS+=(--rpc-port 2); fi\n'
            'exec agave-validator "${ARGS[@]}"\n'
        )
        dup = [f for f in audit_text(text, profile="none").findings if f.code == "duplicate"]
        assert len(dup) == 1
        assert '(only when [ -n "$X" ])' in dup[0].message

    def test_conflicting_flags_in_different_branches_are_no_conflict(self) -> None:
        """--full-rpc-api in the if, --minimal-rpc-api in the else: never given together."""
        branches = (
            'if [ "$R" = full ]; then A=(--full-rpc-api); else A=(--minimal-rpc-api); fi\n'
            'exec agave-validator --ledger /l "${A[@]}"\n'
        )
        together = "exec agave-validator --ledger /l --full-rpc-api --minimal-rpc-api\n"
        for text, conflicts in ((branches, 0), (together, 1)):
            report = audit_text(text, version="1.18", profile="none")
            assert len([f for f in report.findings if f.code == "conflict"]) == conflicts


class TestHeredocs:
    def test_unquoted_heredoc_expands_outer_variables(self) -> None:
        """<<EOF: $RPC_PORT is the setup script's value; \\$HOME stays for the written script."""
        ws = words_of("24_heredoc_unquoted.sh")
        texts = [w.text for w in ws]
        assert texts[texts.index("--rpc-port") + 1] == "8899"
        assert texts[texts.index("--log") + 1] == "${HOME}/validator.log"

    def test_quoted_heredoc_keeps_text_and_lines(self) -> None:
        """<<-'SCRIPT' with tab indentation: the flag's line:col is in the setup script."""
        report = audit_text(fixture_text("25_heredoc_quoted_tabs.sh"), profile="none")
        bad = next(f for f in report.findings if f.flag == "--rpc-threds")
        assert (bad.line, bad.col) == (9, 3)
        assert report.invocations[0].line == 6

    def test_heredoc_unit_is_read_as_a_unit(self) -> None:
        """A here-document that writes a systemd unit is read as that unit's ExecStart."""
        inv = parse(fixture_text("27_heredoc_unit.sh")).invocations[0]
        assert inv.form == "here-document written to /etc/systemd/system/sol.service"
        assert inv.line == 7

    def test_heredoc_data_that_names_no_validator_is_skipped(self) -> None:
        """A here-document without the validator in it is data, not a second script."""
        text = "cat > notes.txt <<EOF\n--ledger is /mnt/ledger\nEOF\nagave-validator --no-voting\n"
        parsed = parse(text)
        assert [[w.text for w in i.argv] for i in parsed.invocations] == [["--no-voting"]]


class TestTemplates:
    def test_template_values_are_shown_as_written(self) -> None:
        """{{ value }} stays one word, marked as a template value, never guessed or checked."""
        ws = words_of("28_ansible_start.sh.j2")
        texts = [w.text for w in ws]
        value = ws[texts.index("--dynamic-port-range") + 1]
        assert value.text == '{{ dynamic_port_range | default("8000-8030") }}'
        assert value.origin == "template"
        report = audit_text(fixture_text("28_ansible_start.sh.j2"), profile="none")
        # the one error: the '# known validators' line ends the rendered command in bash
        assert [(f.code, f.line) for f in report.findings if f.severity == "fail"] == [
            ("parse", 10)
        ]

    def test_flag_in_a_conditional_is_named_with_it(self) -> None:
        """A typo inside {% if %} is an error whose message names the condition."""
        report = audit_text(fixture_text("30_ansible_typo_in_if.sh.j2"), profile="none")
        bad = next(f for f in report.findings if f.flag == "--enable-rpc-transaction-histroy")
        assert bad.severity == "fail"
        assert "only when {% if enable_history | bool %}" in bad.message
        assert (bad.line, bad.col) == (5, 5)

    def test_exclusive_branches_are_not_duplicates(self) -> None:
        """--limit-ledger-size in the if/elif/else branches of one chain is never a duplicate."""
        report = audit_text(fixture_text("29_ansible_rpc_types.sh.j2"), profile="none")
        assert not [f for f in report.findings if f.code == "duplicate"]

    def test_same_variable_different_values_are_exclusive(self) -> None:
        """Two ifs testing rpc_type for different values never render together."""
        text = (
            "agave-validator \\\n{% if t == 'a' %}\n  --full-rpc-api \\\n{% endif %}\n"
            "{% if t == 'b' %}\n  --full-rpc-api \\\n{% endif %}\n  --no-voting\n"
        )
        assert not [f for f in audit_text(text, profile="none").findings if f.code == "duplicate"]

    def test_a_real_duplicate_across_a_conditional_is_reported(self) -> None:
        """A flag outside the if and again inside it is given twice when the if holds."""
        text = (
            "agave-validator --full-rpc-api \\\n{% if x %}\n  --full-rpc-api \\\n"
            "{% endif %}\n  --no-voting\n"
        )
        dup = [f for f in audit_text(text, profile="none").findings if f.code == "duplicate"]
        assert len(dup) == 1
        assert "only when {% if x %}" in dup[0].message

    def test_helm_whitespace_control_and_continuation(self) -> None:
        """{{- if }} lines between continuation lines keep the command together."""
        inv = parse(fixture_text("32_helm_start.tpl")).invocations[0]
        assert [w.text for w in inv.argv][-2:] == ["--full-rpc-api", "--no-voting"]
        assert inv.line == 5

    def test_template_unit_keeps_flags_after_the_if(self) -> None:
        """In a templated unit, the flags after an {% if %} block stay on ExecStart."""
        texts = [w.text for w in words_of("31_ansible_unit.service.j2")]
        assert texts[-3:] == ["--no-voting", "--rpc-port", "{{ rpc_port }}"]

    def test_template_flag_names_are_not_unknown(self) -> None:
        """--{{ $arg }} (a flag named by the chart's values) is a note, never an unknown flag."""
        text = (
            "exec agave-validator \\\n{{- range $k, $v := .Values.args }}\n"
            "  --{{ $k }}={{ $v }} \\\n{{- end }}\n  --no-voting\n"
        )
        report = audit_text(text, source="start.tpl", profile="none")
        codes = {f.code for f in report.findings}
        assert "template-flag" in codes
        assert "unknown" not in codes


class TestNix:
    def test_interpolations_are_values(self) -> None:
        """${toString cfg.x} in a Nix string is one value word, the flag around it checked."""
        report = audit_text(fixture_text("35_nixos_script.nix"), profile="none")
        assert [f.flag for f in report.findings if f.severity == "fail"] == ["--rpc-threds"]
        texts = [w.text for w in words_of("35_nixos_script.nix")]
        assert "${toString config.services.agave.rpcPort}" in texts

    def test_list_form_names_option_values_and_conditions(self) -> None:
        """[ "${validatorCmd}" "--ledger" cfg.ledgerPath ] ++ optionals c [...]: flags, values."""
        ws = words_of("36_nixos_module_list.nix")
        by = {w.text: w for w in ws}
        assert by["cfg.ledgerPath"].origin == "template"
        assert by["--full-rpc-api"].condition == "cfg.fullApi"
        report = audit_text(fixture_text("36_nixos_module_list.nix"), profile="none")
        assert report.errors == 0

    def test_a_bare_name_in_a_string_is_not_a_command(self) -> None:
        """hostName = "solana-validator" does not run anything."""
        text = '{ config, pkgs, ... }:\n{\n  networking.hostName = "solana-validator";\n}\n'
        with pytest.raises(UsageError, match="read as Nix"):
            audit_text(text, source="configuration.nix")


class TestCannotFind:
    def test_compose_without_command_says_what_was_seen(self) -> None:
        """A service running its image's entrypoint: the message names the form and the image."""
        with pytest.raises(UsageError) as err:
            audit_text(fixture_text("46_compose_no_command.yml"), source="compose.yml")
        msg = str(err.value)
        assert "read as compose YAML" in msg
        assert "example/agave:v2.1.13" in msg
        assert "audit the script that entrypoint runs" in msg

    def test_ansible_tasks_name_the_templates_they_install(self) -> None:
        """An Ansible task list that only installs files is not 'compose YAML without a
        command': the message says what it is and which templates to audit instead."""
        with pytest.raises(UsageError) as err:
            audit_text(fixture_text("52_ansible_tasks_install_only.yml"), source="main.yml")
        msg = str(err.value)
        assert "read as an Ansible task list: 3 named task(s)" in msg
        assert "(agave-validator.service.j2, validator.sh.j2)" in msg
        assert "compose" not in msg

    def test_plain_script_without_validator_names_its_kind(self) -> None:
        """A script running something else says it was read as a shell script."""
        with pytest.raises(UsageError, match=r"read as a shell script; nothing"):
            audit_text("#!/bin/sh\necho hello\n", source="x.sh")


class TestFixOnForms:
    def test_fix_in_a_template_edits_the_flag_span(self, tmp_path: Path) -> None:
        """--fix renames a misspelt flag inside {% if %} at its span; the tags stay untouched."""
        text = fixture_text("30_ansible_typo_in_if.sh.j2")
        path = tmp_path / "start.sh.j2"
        path.write_text(text)
        report = fix(audit_text(text, source=str(path), profile="none"), text, path)
        fixed = (tmp_path / "start.sh.j2.agave-perf").read_text()
        assert fixed == text.replace(
            "--enable-rpc-transaction-histroy", "--enable-rpc-transaction-history"
        )
        assert report.fix_applied

    def test_fix_of_a_word_holding_a_template_says_it_will_not(self) -> None:
        """--rpc-threds={{ n }} is one word with a template in it: not rewritten, and said so."""
        text = "#!/bin/bash\nagave-validator --ledger /l --rpc-threds={{ n }}\n"
        report = fix(audit_text(text, source="s.sh.j2", profile="none"), text, None)
        assert report.diff == ""
        assert report.fix_applied == []
        assert any("comes from template" in s for s in report.fix_skipped)

    def test_fix_in_a_heredoc_edits_the_setup_script(self, tmp_path: Path) -> None:
        """The typo inside a here-document is renamed in the setup script, at its span."""
        text = fixture_text("25_heredoc_quoted_tabs.sh")
        report = fix(audit_text(text, profile="none"), text, None)
        assert report.fix_applied == ["--rpc-threds -> --rpc-threads"]
        assert "+\t\t--rpc-threads 8 \\" in report.diff

    def test_fix_in_an_unquoted_heredoc_maps_back_through_the_escapes(self) -> None:
        """In <<EOF with \\\\ continuations, the renamed flag is the one in the file."""
        text = fixture_text("24_heredoc_unquoted.sh").replace("--limit-ledger", "--limit-leger")
        report = fix(audit_text(text, profile="none"), text, None)
        assert report.fix_applied == ["--limit-leger-size -> --limit-ledger-size"]
        assert report.fix_skipped == []
        assert "-\t--limit-leger-size\n+\t--limit-ledger-size\n" in report.diff

    def test_fix_never_deletes_a_list_item(self) -> None:
        """Deleting from a YAML/JSON list would leave its separator: it is left to the operator."""
        text = (
            'FROM x\nENTRYPOINT ["agave-validator"]\n'
            'CMD ["--ledger", "/l", "--no-voting", "--no-voting"]\n'
        )
        report = fix(audit_text(text, source="Dockerfile", profile="none"), text, None)
        assert report.diff == ""
        assert any("an item of a list" in s for s in report.fix_skipped)

    def test_fix_renames_a_quoted_list_item(self) -> None:
        """A misspelt flag in a Dockerfile exec form is renamed inside its quotes."""
        text = fixture_text("43_dockerfile_exec.Dockerfile")
        report = fix(audit_text(text, source="Dockerfile", profile="none"), text, None)
        assert report.fix_applied == ["--rpc-threds -> --rpc-threads"]
        assert re.search(r'^\+CMD .*"--rpc-threads", "8"\]$', report.diff, re.M)
