"""What every command shares: the runtime context, standard options, async running."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from agave_perf import config as config_mod
from agave_perf.duration import parse_duration
from agave_perf.output import Renderable, emit

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


@dataclass
class Runtime:
    """Per-invocation state shared by the root group and its commands."""

    as_json: bool = False
    config_path: str | None = None
    emitted: bool = False  # a result went to stdout; an error then adds no second document
    _settings: config_mod.Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> config_mod.Settings:
        """The validated configuration, loaded on first use."""
        if self._settings is None:
            self._settings = config_mod.load(self.config_path)
        return self._settings

    def emit(self, result: Renderable) -> None:
        """Print a result in the form the user asked for."""
        emit(result, as_json=self.as_json)
        self.emitted = True


def runtime(ctx: click.Context | None = None) -> Runtime:
    """Return the runtime of the current invocation."""
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, Runtime):
        root.obj = Runtime()
    return root.obj


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        runtime(ctx).as_json = True


def _set_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        rt = runtime(ctx)
        rt.config_path = value
        rt._settings = None
        # plugins (plan gates) and child processes load the same file
        os.environ["AGAVE_PERF_CONFIG"] = value


def standard_options(func: F) -> F:
    """Add ``--json`` and ``--config`` to a command (also accepted before the command)."""
    func = click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        is_eager=True,
        help="Print one JSON document instead of tables.",
    )(func)
    func = click.option(
        "--config",
        type=click.Path(dir_okay=False),
        expose_value=False,
        callback=_set_config,
        is_eager=True,
        help="Config file (default: $AGAVE_PERF_CONFIG, then ./agave-perf.toml).",
    )(func)
    return func


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a fresh event loop (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result


class Duration(click.ParamType):  # type: ignore[type-arg]
    """A click parameter type for durations like ``30s`` or ``5m``."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """Convert the text to seconds or fail with a usage error."""
        if isinstance(value, int | float):
            return float(value)
        from agave_perf.errors import UsageError

        try:
            return parse_duration(str(value))
        except UsageError as err:
            self.fail(str(err), param, ctx)
