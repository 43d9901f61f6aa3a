"""The hang watchdog's decisions (no I/O, driven with FakeClock) and the config fields."""

from __future__ import annotations

import math
from typing import Any

import pytest
import redis

from faulttol.testing import FakeClock
from faulttol_redis import DatabaseConfig, MultiDbConfig, OutcomeUnknownError
from faulttol_redis._hang import HangWatch, blocking_wait, scan_interval, waiting_since


def _clock() -> FakeClock:
    """A FakeClock past 0 (a stamp of 0.0 means "not waiting", as time.monotonic() never
    returns it)."""
    clock = FakeClock()
    clock.advance(100.0)
    return clock


class _Conn:
    def __init__(self, since: float, unwatched: bool = False) -> None:
        self._ft_since = since
        self._ft_unwatched = unwatched


def test_a_command_is_probed_once_it_waited_the_window() -> None:
    clock = _clock()
    watch = HangWatch(0.5)
    sent = clock.monotonic()
    clock.advance(0.49)
    assert not watch.due(clock.monotonic(), sent)
    clock.advance(0.01)
    assert watch.due(clock.monotonic(), sent)


def test_no_waiting_command_is_never_probed() -> None:
    clock = _clock()
    clock.advance(100)
    assert not HangWatch(0.5).due(clock.monotonic(), 0.0)


def test_an_alive_database_is_probed_again_only_a_window_later() -> None:
    clock = _clock()
    watch = HangWatch(0.5)
    sent = clock.monotonic()
    clock.advance(0.6)
    assert watch.due(clock.monotonic(), sent)
    watch.alive(clock.monotonic())
    clock.advance(0.4)
    assert not watch.due(clock.monotonic(), sent)  # busy, not hung: keeps waiting
    clock.advance(0.1)
    assert watch.due(clock.monotonic(), sent)
    watch.hung()
    assert watch.due(clock.monotonic(), sent)


def test_a_blocking_command_is_watched_from_its_own_timeout() -> None:
    clock = _clock()
    watch = HangWatch(0.5)
    # BLPOP k 2 sent at t: its stamp is t + 2
    since = clock.monotonic() + blocking_wait(("BLPOP", "k", 2))  # type: ignore[operator]
    clock.advance(2.4)
    assert not watch.due(clock.monotonic(), since)
    clock.advance(0.1)
    assert watch.due(clock.monotonic(), since)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("BLPOP", "a", "b", 2), 2.0),
        ((b"BRPOP", b"a", b"1.5"), 1.5),
        (("BLPOP", "a", 0), math.inf),
        (("BLMOVE", "a", "b", "LEFT", "RIGHT", 3), 3.0),
        (("BZPOPMIN", "z", 0.25), 0.25),
        (("BLMPOP", 4, 1, "a", "LEFT"), 4.0),
        (("BZMPOP", 0, 1, "a", "MIN"), math.inf),
        (("BZMOVE", "z", "y", "MIN", 1.5, "COUNT", 2), 1.5),
        (("BLMOVEM", "a", "b", "LEFT", "RIGHT", 2, "COUNT", 3, "OBO"), 2.0),
        ((b"BLMOVEM", b"a", b"b", b"LEFT", b"RIGHT", b"0"), math.inf),
        (("WAIT", 1, 250), 0.25),
        (("WAIT", 1, 0), math.inf),
        (("WAITAOF", 1, 0, 100), 0.1),
        (("XREAD", "COUNT", 1, "BLOCK", 500, "STREAMS", "s", "$"), 0.5),
        (("XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "s", ">"), math.inf),
        (("XREAD", "STREAMS", "s", "0"), None),
        (("GET", "k"), None),
    ],
)
def test_blocking_wait(args: tuple[Any, ...], expected: float | None) -> None:
    assert blocking_wait(args) == expected


def test_waiting_since_skips_idle_and_pubsub_connections() -> None:
    conns = [_Conn(0.0), _Conn(5.0), _Conn(3.0, unwatched=True), _Conn(7.0)]
    assert waiting_since(conns) == 5.0
    assert waiting_since([_Conn(0.0), _Conn(1.0, unwatched=True)]) == 0.0


def test_scan_interval_is_a_quarter_window() -> None:
    assert scan_interval(0.5) == 0.125


# --- config ---------------------------------------------------------------------------------


def test_hang_config_defaults() -> None:
    config = MultiDbConfig([DatabaseConfig()])
    assert config.hang_detection_after == 0.5
    assert config.hang_probe_timeout == 0.5
    assert config.hedge_reads_after is None
    off = config.replace(hang_detection_after=None, hedge_reads_after=0.02)
    assert off.hang_detection_after is None
    assert off.hedge_reads_after == 0.02


@pytest.mark.parametrize("field", ["hang_detection_after", "hang_probe_timeout",
                                   "hedge_reads_after"])
@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf])
def test_hang_config_rejects_non_positive_or_infinite(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        MultiDbConfig([DatabaseConfig()], **{field: value})


def test_hang_probe_timeout_cannot_be_none() -> None:
    with pytest.raises(TypeError, match="hang_probe_timeout"):
        MultiDbConfig([DatabaseConfig()], hang_probe_timeout=None)  # type: ignore[arg-type]


def test_outcome_unknown_error_is_a_redis_timeout_naming_the_database() -> None:
    error = OutcomeUnknownError("db1")
    assert isinstance(error, redis.exceptions.TimeoutError)
    assert "outcome is unknown" in str(error)
    assert "db1" in str(error)
    assert error.database == "db1"
