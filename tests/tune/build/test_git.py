"""The git facts agave-perf reads from a checkout, with the real git."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agave_perf.errors import UsageError
from agave_perf.tune.build._git import repo_state
from tests.tune.build.workspaces import git, need_tools


class TestRepoState:
    def test_checkout_of_another_user_is_a_clear_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """git's 'dubious ownership' refusal is named, not mistaken for 'not a git checkout'."""
        need_tools()
        if os.geteuid() != 0:
            pytest.skip("needs root to give the checkout another owner")
        empty = tmp_path / "gitconfig"
        empty.write_text("")
        monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
        monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        repo = tmp_path / "agave"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        git(repo, "commit", "-q", "--allow-empty", "-m", "init")
        for dirpath, dirnames, filenames in os.walk(repo):
            os.chown(dirpath, 1234, 1234)
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), 1234, 1234)
        with pytest.raises(UsageError, match=r"safe\.directory"):
            repo_state(repo)

    def test_plain_directory_has_no_commit(self, tmp_path: Path) -> None:
        """A directory outside any repository has no commit and is not dirty."""
        need_tools()
        state = repo_state(tmp_path)
        assert (state.commit, state.branch, state.dirty) == ("", "", False)
