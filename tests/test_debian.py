"""The Debian-component guard skips with the package named, and fails in CI."""

from __future__ import annotations

import pytest

from tests.debian import need


class TestNeed:
    def test_present_program(self) -> None:
        """A program on PATH is returned."""
        assert need("sh").endswith("/sh")

    def test_missing_skips_naming_package(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A missing program skips, naming the Debian package to install."""
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(pytest.skip.Exception, match="needs Debian package 'nosuchpkg'"):
            need("no-such-program-xyz", "nosuchpkg")

    def test_missing_fails_in_ci(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """In CI the same situation is a failure, never a silent skip."""
        monkeypatch.setenv("CI", "true")
        with pytest.raises(pytest.fail.Exception, match="should have installed"):
            need("no-such-program-xyz", "nosuchpkg")
