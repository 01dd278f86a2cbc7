"""The configuration file: found in the documented order, validated strictly."""

from __future__ import annotations

from pathlib import Path

import pytest

from agave_perf import config
from agave_perf.errors import ConfigError


class TestLoad:
    def test_defaults_without_any_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No file anywhere gives the documented defaults (the plan's SLOs)."""
        monkeypatch.chdir(tmp_path)
        s = config.load()
        assert s.slo.max_slot_lag == 5
        assert s.slo.latency_p95_ms == 50.0
        assert s.slo.memory_limit_gib == 16.0

    def test_order_explicit_env_local(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--config beats $AGAVE_PERF_CONFIG, which beats ./agave-perf.toml."""
        monkeypatch.chdir(tmp_path)
        (tmp_path / "agave-perf.toml").write_text("[slo]\nmax_slot_lag = 7\n")
        assert config.load().slo.max_slot_lag == 7
        env = tmp_path / "env.toml"
        env.write_text("[slo]\nmax_slot_lag = 8\n")
        monkeypatch.setenv("AGAVE_PERF_CONFIG", str(env))
        assert config.load().slo.max_slot_lag == 8
        explicit = tmp_path / "x.toml"
        explicit.write_text("[slo]\nmax_slot_lag = 9\n")
        assert config.load(str(explicit)).slo.max_slot_lag == 9

    def test_unknown_key_suggests(self, tmp_path: Path) -> None:
        """A misspelled key is an error naming the key and the likely intended one."""
        f = tmp_path / "c.toml"
        f.write_text("[slo]\nmax_slot_lagg = 3\n")
        with pytest.raises(ConfigError, match=r"unknown key 'slo.max_slot_lagg'.*max_slot_lag"):
            config.load(str(f))

    def test_unknown_section(self, tmp_path: Path) -> None:
        """A misspelled section is reported with a suggestion."""
        f = tmp_path / "c.toml"
        f.write_text("[sloo]\nmax_slot_lag = 3\n")
        with pytest.raises(ConfigError, match=r"unknown key 'sloo'.*'slo'"):
            config.load(str(f))

    def test_wrong_type_and_range(self, tmp_path: Path) -> None:
        """Values are type- and range-checked with the key named."""
        f = tmp_path / "c.toml"
        f.write_text("[slo]\nlag_quantile = 1.5\n")
        with pytest.raises(ConfigError, match=r"slo\.lag_quantile"):
            config.load(str(f))

    def test_not_toml_and_missing(self, tmp_path: Path) -> None:
        """Broken TOML and a named file that does not exist are clear errors."""
        f = tmp_path / "c.toml"
        f.write_text("[slo\n")
        with pytest.raises(ConfigError, match="not valid TOML"):
            config.load(str(f))
        with pytest.raises(ConfigError, match="cannot read config"):
            config.load(str(tmp_path / "missing.toml"))


class TestAccelSection:
    def test_accel_settings_build_the_accelerator(self) -> None:
        """[accel] keys reach AccelConfig; flags given as overrides win; limits are parsed."""
        from agave_perf.accel import AccelConfig

        s = config.parse(
            {"accel": {"backends": ["http://n:8899"], "listen": "127.0.0.1:9000",
                       "limits": {"getProgramAccounts": "4/16"}, "max_lag": 3}}
        )  # fmt: skip
        cfg = AccelConfig.from_settings(s.accel, max_lag=7, hedge_ms=None)
        assert cfg.backends == ["http://n:8899"]
        assert (cfg.host, cfg.port) == ("127.0.0.1", 9000)
        assert cfg.limits == {"getProgramAccounts": (4, 16)}
        assert cfg.max_lag == 7
        assert cfg.default_limit == (256, 1024)
        assert AccelConfig(backends=["x"]).hot_after == config.AccelSettings().hot_after

    def test_a_malformed_limit_is_a_config_error(self) -> None:
        """A limit that is not CONCURRENCY/QUEUE names its key."""
        with pytest.raises(ConfigError, match=r"accel\.limits\.getBalance"):
            config.parse({"accel": {"limits": {"getBalance": "0/4"}}})
