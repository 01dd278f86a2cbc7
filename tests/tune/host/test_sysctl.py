"""sysctl.conf parsing and rendering, value comparison, and what the next boot applies."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from agave_perf.testing.fakeroot import FakeRoot
from agave_perf.tune.host import Host, load_profile
from agave_perf.tune.host.sysctl import (
    conf_values,
    meets,
    normalize_key,
    parse_conf,
    persisted,
    render_conf,
    set_values,
)

keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z0-9_-]{1,8}){1,3}", fullmatch=True)
values = st.from_regex(r"[0-9]{1,12}( [0-9]{1,8}){0,2}", fullmatch=True)
spaces = st.sampled_from(["", " ", "  ", "\t"])
comment = st.from_regex(r"[#;][^\n\r]{0,30}", fullmatch=True)


@st.composite
def assignment(draw: st.DrawFn) -> str:
    eq = draw(spaces) + "=" + draw(spaces)
    return f"{draw(spaces)}{draw(keys)}{eq}{draw(values)}{draw(spaces)}"


conf_text = st.lists(
    st.one_of(assignment(), comment, st.just(""), st.just("   ")), max_size=12
).map(lambda lines: "".join(line + "\n" for line in lines))


class TestConfRoundTrip:
    @given(conf_text)
    def test_render_gives_back_the_exact_text(self, text: str) -> None:
        """parse -> render is the identity on any sysctl.conf text."""
        assert render_conf(parse_conf(text)) == text

    @given(conf_text, st.dictionaries(keys, values, min_size=1, max_size=4))
    def test_set_values_sets_every_key_and_keeps_the_rest(
        self, text: str, wanted: dict[str, str]
    ) -> None:
        """After set_values every wanted key has its value; other assignments are untouched."""
        out = set_values(text, wanted)
        got = conf_values(parse_conf(out))
        for key, value in wanted.items():
            assert got[key] == value
        before = conf_values(parse_conf(text))
        for key, value in before.items():
            if key not in wanted:
                assert got[key] == value

    @given(conf_text)
    def test_set_values_with_current_values_changes_nothing(self, text: str) -> None:
        """Setting every key to the value it already has leaves the text byte-identical."""
        current = conf_values(parse_conf(text))
        assert set_values(text, current) == text

    def test_comments_and_ignore_prefix(self) -> None:
        """Comments are not assignments; a leading '-' (ignore errors) still sets the key."""
        lines = parse_conf("# a = 1\n; b = 2\n-net.core.x = 5\nnet/core/y=6\n")
        assert conf_values(lines) == {"net.core.x": "5", "net.core.y": "6"}

    def test_slash_keys_normalised(self) -> None:
        """Slash-separated keys are the same parameter as dotted ones."""
        assert normalize_key("vm/max_map_count") == "vm.max_map_count"


class TestMeets:
    @given(st.integers(0, 2**40), st.integers(0, 2**40))
    def test_min_max_exact(self, observed: int, rule: int) -> None:
        """Comparison follows the rule's direction for any pair of integers."""
        assert meets(str(observed), rule, "min") == (observed >= rule)
        assert meets(str(observed), rule, "max") == (observed <= rule)
        assert meets(str(observed), rule, "exact") == (observed == rule)

    @given(st.text(alphabet="abcxyz-_ ", max_size=8))
    def test_non_numbers_never_meet(self, observed: str) -> None:
        """An unparseable observed value fails every comparison."""
        assert not meets(observed, 0, "min")


class TestPersisted:
    def test_order_and_masking_follow_systemd_sysctl(self, tmp_path: Path) -> None:
        """Files apply by name; /etc masks /usr/lib; /etc/sysctl.conf applies last."""
        root = FakeRoot.build(tmp_path / "r")
        root.write("/usr/lib/sysctl.d/10-a.conf", "vm.swappiness = 5\n")
        root.write("/etc/sysctl.d/10-a.conf", "vm.swappiness = 7\n")
        root.write("/usr/lib/sysctl.d/50-b.conf", "vm.swappiness = 9\nfs.nr_open = 3\n")
        root.write("/etc/sysctl.conf", "fs.nr_open = 4\n")
        got = persisted(Host.at(root.path, load_profile()))
        assert got["vm.swappiness"] == ("9", "/usr/lib/sysctl.d/50-b.conf")
        assert got["fs.nr_open"] == ("4", "/etc/sysctl.conf")

    def test_operator_value_is_kept_when_persisting(self, tmp_path: Path) -> None:
        """A live value stricter than the profile is what gets persisted, never lowered."""
        from agave_perf.tune.host.sysctl import SysctlStage

        root = FakeRoot.build(tmp_path / "r", sysctl={"net.core.rmem_max": "268435456"})
        changes = SysctlStage().plan(Host.at(root.path, load_profile()))
        conf = next(c for c in changes if c.kind == "file")
        assert "net.core.rmem_max = 268435456" in conf.new.decode()
        assert all(c.path != "/proc/sys/net/core/rmem_max" for c in changes)
