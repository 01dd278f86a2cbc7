"""The InfluxDB line-protocol receiver: Agave's config rules, parsing, the server, the tee."""

from __future__ import annotations

import asyncio
import gzip
import string

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb.line_protocol import make_lines

from agave_perf.errors import UsageError
from agave_perf.slo.influx import (
    InfluxReceiver,
    MetricPoint,
    by_slot,
    parse_batch,
    parse_metrics_config,
)

AGAVE_LINE = (
    b"replay-slot-stats,host_id=9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin "
    b"slot=312345678i,replay_total_elapsed=56789i,total_shreds=900i 1700000000000000000"
)


def _bare(s: str) -> bool:
    return s.strip() == s and not s.startswith("#")


NAMES = st.text(string.ascii_letters + string.digits + " ,=_-.", min_size=1, max_size=12).filter(
    _bare
)
# the influxdb writer escapes '=' in measurements, which the spec does not; keep it to tags
MEASUREMENTS = st.text(
    string.ascii_letters + string.digits + " ,_-.", min_size=1, max_size=12
).filter(_bare)
VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    # subnormal floats (< 2.2e-308) are refused by the parser library; Agave sends none
    st.floats(allow_nan=False, allow_infinity=False, width=64).filter(
        lambda f: f == 0 or abs(f) >= 1e-300
    ),
    st.booleans(),
    st.text(string.printable.replace("\r", "").replace("\n", ""), max_size=20),
)


class TestMetricsConfig:
    def test_agave_format_is_read(self) -> None:
        """host, db, u and p are read; the write URL is Agave's /write with precision n."""
        cfg = parse_metrics_config("host=http://127.0.0.1:8086,db=agave,u=x,p=y")
        assert (cfg.host, cfg.db, cfg.user, cfg.password) == (
            "http://127.0.0.1:8086",
            "agave",
            "x",
            "y",
        )
        assert cfg.write_url() == "http://127.0.0.1:8086/write?db=agave&u=x&p=y&precision=n"

    @pytest.mark.parametrize(
        ("text", "why"),
        [
            ("host=http://h:1,db=d,u=x", "missing p"),
            ("host=http://h:1,db=d,u=x,p=y,extra=1", "unknown key 'extra'"),
            ("host=h:1,db=d,u=x,p=y", "http"),
            ("host=http://h:1,db,u=x,p=y", "not key=value"),
        ],
    )
    def test_agave_rules_refuse_what_agave_refuses(self, text: str, why: str) -> None:
        """All four keys are required and no other is accepted, as in Agave's metrics crate."""
        with pytest.raises(UsageError, match=why):
            parse_metrics_config(text)


class TestParse:
    def test_agave_datapoint(self) -> None:
        """Integers with the i suffix, the host_id tag and the slot field come through."""
        points, errors = parse_batch(AGAVE_LINE, received=7.0)
        assert errors == []
        (p,) = points
        assert p.measurement == "replay-slot-stats"
        assert p.host_id.startswith("9xQe")
        assert p.slot == 312345678
        assert p.fields["replay_total_elapsed"] == 56789
        assert p.time_ns == 1700000000000000000
        assert p.received == 7.0

    def test_quoted_strings_escapes_and_booleans(self) -> None:
        """Escaped spaces and commas in names and tags, quotes in strings, t/f booleans."""
        body = b'm\\ x,t\\,g=a\\ b s="he said \\"hi\\"",ok=t,f=1.5 5'
        (p,), errors = parse_batch(body)
        assert errors == []
        assert p.measurement == "m x"
        assert p.tags == {"t,g": "a b"}
        assert p.fields == {"s": 'he said "hi"', "ok": True, "f": 1.5}

    @pytest.mark.parametrize(
        ("precision", "factor"), [("n", 1), ("u", 1000), ("ms", 10**6), ("s", 10**9)]
    )
    def test_precision_scales_the_timestamp_to_ns(self, precision: str, factor: int) -> None:
        """The precision query parameter says what unit the timestamps are in."""
        (p,), _ = parse_batch(b"m f=1i 42", precision=precision)
        assert p.time_ns == 42 * factor

    def test_unknown_precision_is_refused(self) -> None:
        """A precision InfluxDB does not know is a usage error, not a silent ns."""
        with pytest.raises(UsageError, match="precision"):
            parse_batch(b"m f=1i 1", precision="fortnight")

    def test_malformed_lines_are_counted_and_skipped_with_reason(self) -> None:
        """Good lines of a batch survive its bad ones; each bad one says where and why."""
        body = b"\n".join(
            [b"good f=1i", b"garbage", b"m f=", b"\xff\xfe bad", b"# comment", b"", b"m2 g=2"]
        )
        points, errors = parse_batch(body)
        assert [p.measurement for p in points] == ["good", "m2"]
        assert [e.line for e in errors] == [2, 3, 4]
        assert errors[2].reason == "not UTF-8"
        assert all(e.reason for e in errors)

    def test_join_on_slot_not_time(self) -> None:
        """by_slot indexes a measurement by its slot field and ignores points without one."""
        pts, _ = parse_batch(b"a slot=5i,x=1i 1\na slot=6i,x=2i 1\nb slot=5i 1\na x=3i 1")
        joined = by_slot(pts, "a")
        assert sorted(joined) == [5, 6]
        assert joined[6].fields["x"] == 2

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=400))
    def test_any_bytes_never_raise(self, body: bytes) -> None:
        """Whatever arrives, parsing returns points and errors, never an exception."""
        points, errors = parse_batch(body)
        assert len(points) + len(errors) <= body.count(b"\n") + 1

    @settings(max_examples=200, deadline=None)
    @given(
        measurement=MEASUREMENTS,
        tags=st.dictionaries(NAMES, NAMES, max_size=3),
        fields=st.dictionaries(NAMES, VALUES, min_size=1, max_size=4),
        stamp=st.integers(0, 2**62),
    )
    def test_lines_written_by_the_influxdb_client_round_trip(
        self,
        measurement: str,
        tags: dict[str, str],
        fields: dict[str, int | float | bool | str],
        stamp: int,
    ) -> None:
        """What the `influxdb` package's own line writer produces parses back to the same point."""
        line = make_lines(
            {
                "points": [
                    {"measurement": measurement, "tags": tags, "fields": fields, "time": stamp}
                ]
            }
        )
        (p,), errors = parse_batch(line.encode())
        assert errors == []
        assert p.measurement == measurement
        assert p.tags == {k: v for k, v in tags.items() if v}  # the writer drops empty tag values
        assert p.time_ns == stamp
        for k, v in fields.items():
            got = p.fields[k]
            if isinstance(v, float):
                assert got == pytest.approx(v, rel=1e-12) or float(got) == v
            else:
                assert got == v


async def post(url: str, body: bytes, **kw: object) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.post(url, data=body, **kw) as r:  # type: ignore[arg-type]
        return r.status, await r.text()


class TestReceiver:
    async def test_the_influxdb_client_writes_to_it(self) -> None:
        """The `influxdb` package (a client nobody here wrote) pings, creates a db, writes."""
        from influxdb import InfluxDBClient

        got: list[MetricPoint] = []
        async with InfluxReceiver(got.extend) as rx:
            client = InfluxDBClient(host="127.0.0.1", port=rx.port, database="agave", timeout=5)

            def write() -> None:
                client.ping()
                client.create_database("agave")
                ok = client.write_points(
                    [
                        {
                            "measurement": "bank_frozen",
                            "tags": {"host_id": "me"},
                            "fields": {"slot": 10, "hash": "abc"},
                        },
                        {
                            "measurement": "metrics",
                            "tags": {"host_id": "me"},
                            "fields": {"points_lost": 3, "points_buffered": 7},
                        },
                    ],
                    time_precision="ms",
                )
                assert ok
                client.close()

            await asyncio.to_thread(write)
        assert [p.measurement for p in got] == ["bank_frozen", "metrics"]
        assert got[0].slot == 10
        assert rx.stats.agave_lost == {"me": 3}
        assert rx.stats.agave_buffered == {"me": 7}
        assert rx.stats.hosts == {"me"}

    async def test_partial_batch_answers_400_and_keeps_the_good_points(self) -> None:
        """Like InfluxDB: good lines are written, the answer is 400 naming the first bad line."""
        got: list[MetricPoint] = []
        async with InfluxReceiver(got.extend) as rx:
            status, text = await post(f"{rx.url}/write?db=agave", b"ok f=1i\nnope\nok f=2i")
            assert status == 400
            assert "line 2" in text
            assert "2 written" in text
        assert len(got) == 2
        assert sum(rx.stats.malformed.values()) == 1

    async def test_oversized_body_is_413_and_the_receiver_keeps_serving(self) -> None:
        """A body beyond the limit is refused with 413; the next good batch still lands."""
        got: list[MetricPoint] = []
        async with InfluxReceiver(got.extend, max_body=1024) as rx:
            status, _ = await post(f"{rx.url}/write", b"m f=1i\n" * 1000)
            assert status == 413
            status, _ = await post(f"{rx.url}/write", b"m f=1i")
            assert status == 204
        assert len(got) == 1
        assert rx.stats.rejected["too large"] == 1

    async def test_gzip_bodies_and_gzip_bombs(self) -> None:
        """gzip is accepted; a small gzip that inflates beyond the limit is refused with 413."""
        got: list[MetricPoint] = []
        async with InfluxReceiver(got.extend, max_body=4096) as rx:
            hdr = {"Content-Encoding": "gzip"}
            status, _ = await post(f"{rx.url}/write", gzip.compress(AGAVE_LINE), headers=hdr)
            assert status == 204
            status, _ = await post(f"{rx.url}/write", gzip.compress(b"x" * 10**6), headers=hdr)
            assert status == 413
            status, _ = await post(f"{rx.url}/write", b"not gzip", headers=hdr)
            assert status == 400
        assert len(got) == 1

    async def test_garbage_never_stops_it(self) -> None:
        """Binary noise, a bad precision and a wrong method are answered; writes keep working."""
        async with InfluxReceiver() as rx:
            assert (await post(f"{rx.url}/write", bytes(range(256)) * 10))[0] == 400
            assert (await post(f"{rx.url}/write?precision=x", b"m f=1i"))[0] == 400
            async with aiohttp.ClientSession() as s, s.get(f"{rx.url}/write") as r:
                assert r.status == 405
            assert (await post(f"{rx.url}/write", AGAVE_LINE))[0] == 204
        assert rx.stats.points == 1

    async def test_busy_port_is_a_usage_error(self) -> None:
        """Binding a port already taken says so in one line."""
        async with InfluxReceiver() as rx:
            with pytest.raises(UsageError, match="--metrics-listen"):
                await InfluxReceiver(port=rx.port).start()

    async def test_forward_tees_every_batch_unchanged(self) -> None:
        """With forward=URL every batch reaches a second receiver byte for byte, bad lines too."""
        downstream: list[MetricPoint] = []
        upstream: list[MetricPoint] = []
        async with InfluxReceiver(downstream.extend) as down:
            async with InfluxReceiver(upstream.extend, forward=down.url) as up:
                for i in range(20):
                    await post(
                        f"{up.url}/write?db=agave&precision=ms", b"m,host_id=v slot=%di %d" % (i, i)
                    )
                await post(f"{up.url}/write?db=agave", b"bad line")
            assert up.stats.forwarded == 21
            assert up.stats.forward_rejected == 1  # the bad batch, refused downstream too
            assert up.stats.forward_failed == 0
        assert [p.slot for p in downstream] == list(range(20))
        assert [p.time_ns for p in downstream] == [p.time_ns for p in upstream]
        assert sum(down.stats.malformed.values()) == 1

    async def test_a_dead_forward_target_is_counted_not_fatal(self) -> None:
        """Forwarding to a dead port fails quietly; the receiver keeps taking writes."""
        async with InfluxReceiver() as probe:
            dead = probe.url
        got: list[MetricPoint] = []
        async with InfluxReceiver(got.extend, forward=dead, forward_timeout_s=1.0) as rx:
            for _ in range(3):
                assert (await post(f"{rx.url}/write", AGAVE_LINE))[0] == 204
        assert len(got) == 3
        assert rx.stats.forward_failed == 3
