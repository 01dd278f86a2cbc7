"""An arm's changes: exact flag edits to the start script, made and undone through the journal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agave_perf.errors import UsageError
from agave_perf.experiment import Target, Variant, edit_script, parse_spec
from agave_perf.testing.fakeroot import FakeRoot

SCRIPT = """#!/bin/bash
exec agave-validator \\
  --identity /home/sol/id.json \\
  --rpc-threads 8 \\
  --account-index=spl-token-owner \\
  --full-rpc-api \\
  --ledger /mnt/ledger
"""


def v(**kw: Any) -> Variant:
    return Variant(name="b", **kw)


class TestEditScript:
    def test_a_value_is_replaced_in_place(self) -> None:
        """Only the value's span changes: space and equals forms alike."""
        out = edit_script(SCRIPT, "v.sh", v(set={"--rpc-threads": "1"}))
        assert out == SCRIPT.replace("--rpc-threads 8", "--rpc-threads 1")
        out = edit_script(SCRIPT, "v.sh", v(set={"--account-index": "program-id"}))
        assert "--account-index=program-id \\\n" in out

    def test_a_new_flag_follows_the_script_s_one_flag_a_line_style(self) -> None:
        """Appended after the last argument, on its own continued line with the same indent."""
        out = edit_script(SCRIPT, "v.sh", v(set={"--rpc-pubsub-enable-block-subscription": ""}))
        assert out.endswith("  --ledger /mnt/ledger \\\n  --rpc-pubsub-enable-block-subscription\n")

    def test_a_one_line_command_gets_the_flag_on_the_same_line(self) -> None:
        """Without continuations the words are appended where the command ends."""
        out = edit_script("agave-validator --ledger /l\n", "v.sh", v(set={"--x": "1"}))
        assert out == "agave-validator --ledger /l --x 1\n"

    def test_a_removed_flag_takes_its_line_and_value(self) -> None:
        """Removing drops the flag's whole line, its value with it."""
        out = edit_script(SCRIPT, "v.sh", v(remove=("--rpc-threads", "--full-rpc-api")))
        assert "--rpc-threads" not in out
        assert "--full-rpc-api" not in out
        assert "--identity /home/sol/id.json \\\n  --account-index" in out

    def test_an_empty_variant_changes_nothing(self) -> None:
        """The A/A arm leaves the text as it is."""
        assert edit_script(SCRIPT, "v.sh", v()) == SCRIPT

    def test_a_flag_set_from_a_variable_is_refused(self) -> None:
        """A value that is not literal text cannot be rewritten exactly: a usage error."""
        text = 'T=8\nagave-validator --rpc-threads "$T" --ledger /l\n'
        with pytest.raises(UsageError, match="cannot change it precisely"):
            edit_script(text, "v.sh", v(set={"--rpc-threads": "1"}))

    def test_a_script_without_the_validator_is_refused(self) -> None:
        """There must be exactly one validator command to edit."""
        with pytest.raises(UsageError, match="no agave-validator command"):
            edit_script("echo hi\n", "v.sh", v(set={"--x": "1"}))


class TestTarget:
    def spec(self, host: tuple[str, ...] = ()) -> Any:
        return parse_spec(
            {
                "name": "t",
                "start_script": "/home/sol/validator.sh",
                "restart": {"command": "true"},
                "measure": {"rpc": "http://127.0.0.1:1"},
                "variant": [{"name": "b", "set": {"--rpc-threads": "1"}, "host": list(host)}],
            }
        )

    def test_apply_then_restore_is_byte_identical_script_and_host(self, tmp_path: Path) -> None:
        """The script and the host stage's files come back exactly, modes included."""
        root = FakeRoot.build(tmp_path / "root")
        root.write("/home/sol/validator.sh", SCRIPT, mode=0o750)
        before = root.snapshot()
        spec = self.spec(host=("sysctl",))
        target = Target(spec, tmp_path, root.path, tmp_path / "state")
        planned = target.plan(spec.variant[0], target.read_script())
        assert planned.host, "the untuned fake root has sysctl changes to make"
        txn = target.apply("exp-1", planned)
        assert txn is not None
        assert target.pending("exp-1") == [txn]
        assert "--rpc-threads 1" in root.read("/home/sol/validator.sh")
        assert root.snapshot() != before
        target.restore("exp-1")
        assert root.snapshot() == before
        assert target.pending("exp-1") == []

    def test_another_experiment_s_changes_are_left_alone(self, tmp_path: Path) -> None:
        """restore undoes only the journal runs of its own experiment."""
        root = FakeRoot.build(tmp_path / "root")
        root.write("/home/sol/validator.sh", SCRIPT)
        spec = self.spec()
        target = Target(spec, tmp_path, root.path, tmp_path / "state")
        target.apply("exp-1", target.plan(spec.variant[0], SCRIPT))
        assert target.restore("exp-2") == []
        assert "--rpc-threads 1" in root.read("/home/sol/validator.sh")

    def test_a_relative_script_outside_the_root_is_refused(self, tmp_path: Path) -> None:
        """The script must live in the tree the journal covers."""
        spec = self.spec().model_copy(update={"start_script": "../../v.sh"})
        (tmp_path / "root").mkdir()
        with pytest.raises(UsageError, match="outside --root"):
            Target(spec, tmp_path / "root" / "sub", tmp_path / "root", tmp_path / "state")
