"""Unit tests of the sliding windows (faulttol.window)."""

from __future__ import annotations

import gc
import sys
import threading

import pytest

from faulttol.window import MAX_QUEUED_SUCCESSES, CountWindow, Snapshot, TimeWindow

SLOW = 1.0  # slow_call_duration_threshold used throughout


def counts(window: CountWindow | TimeWindow, now: float = 0.0) -> tuple[int, int, int, int]:
    snap = window.snapshot(now)
    return snap.total_calls, snap.failed_calls, snap.slow_calls, snap.slow_failed_calls


# --- Snapshot ----------------------------------------------------------------------------


def test_snapshot_derived_values() -> None:
    snap = Snapshot(
        total_calls=8, failed_calls=2, slow_calls=3, slow_failed_calls=1, total_duration=4.0
    )
    assert snap.successful_calls == 6
    assert snap.slow_successful_calls == 2
    assert snap.failure_rate == 25.0
    assert snap.slow_call_rate == 37.5
    assert snap.average_duration == 0.5


def test_empty_snapshot_has_zero_rates() -> None:
    snap = Snapshot()
    assert (snap.failure_rate, snap.slow_call_rate, snap.average_duration) == (0.0, 0.0, 0.0)


def test_snapshot_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Snapshot().total_calls = 1  # type: ignore[misc]


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [CountWindow, TimeWindow])
@pytest.mark.parametrize("size", [0, -1, 1.5, True])
def test_invalid_size(cls: type[CountWindow | TimeWindow], size: object) -> None:
    with pytest.raises(ValueError, match="size"):
        cls(size, SLOW)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [CountWindow, TimeWindow])
def test_invalid_slow_threshold(cls: type[CountWindow | TimeWindow]) -> None:
    with pytest.raises(ValueError, match="slow_call_duration_threshold"):
        cls(3, -0.1)
    with pytest.raises(ValueError, match="slow_call_duration_threshold"):
        cls(3, float("nan"))


# --- CountWindow -------------------------------------------------------------------------


def test_count_window_counts_outcomes() -> None:
    w = CountWindow(10, SLOW)
    w.record(0.1, False)
    w.record(0.2, True)
    w.record(2.0, False)  # slow success
    w.record(3.0, True)  # slow failure
    assert counts(w) == (4, 2, 2, 1)
    snap = w.snapshot()
    assert snap.total_duration == pytest.approx(5.3)
    assert snap.failure_rate == 50.0
    assert snap.slow_call_rate == 50.0


def test_slow_means_strictly_longer_than_threshold() -> None:
    w = CountWindow(5, SLOW)
    w.record(SLOW, False)
    assert w.snapshot().slow_calls == 0
    w.record(SLOW + 1e-9, False)
    assert w.snapshot().slow_calls == 1


def test_count_window_evicts_oldest() -> None:
    w = CountWindow(3, SLOW)
    w.record(5.0, True)  # slow failure, evicted by the 4th call
    w.record(0.0, True)
    w.record(0.0, False)
    assert counts(w) == (3, 2, 1, 1)
    w.record(0.0, False)
    assert counts(w) == (3, 1, 0, 0)
    w.record(0.0, False)  # evicts the plain failure
    assert counts(w) == (3, 0, 0, 0)
    assert w.snapshot().total_duration == 0.0


def test_count_window_of_one() -> None:
    w = CountWindow(1, SLOW)
    for failed in (True, False, True):
        w.record(0.0, failed)
        assert counts(w) == (1, int(failed), 0, 0)


def test_count_window_reset() -> None:
    w = CountWindow(3, SLOW)
    w.record(2.0, True)
    w.reset()
    assert counts(w) == (0, 0, 0, 0)
    assert w.snapshot().total_duration == 0.0
    w.record(0.0, True)
    assert counts(w) == (1, 1, 0, 0)


def test_count_window_queueing_is_off_until_allowed() -> None:
    w = CountWindow(4, SLOW)
    assert not w.try_queue_success(0.1)
    w.allow_queue(True)
    assert w.try_queue_success(0.1)
    assert not w.try_queue_success(2.0), "slow successes are never queued"
    w.allow_queue(False)
    assert not w.try_queue_success(0.1)


def test_count_window_queued_successes_fold_in_order() -> None:
    w = CountWindow(4, SLOW)
    w.record(0.0, True)
    w.record(5.0, True)
    w.allow_queue(True)
    for _ in range(3):
        assert w.try_queue_success(0.5)
    # Three successes follow the two failures: the first failure is evicted.
    assert counts(w) == (4, 1, 1, 1)
    assert w.snapshot().total_duration == pytest.approx(6.5)
    w.record(0.0, True)  # record() folds queued successes in before the new outcome
    assert counts(w) == (4, 1, 0, 0)


def test_count_window_more_queued_than_size_fills_with_successes() -> None:
    w = CountWindow(5, SLOW)
    for _ in range(4):
        w.record(3.0, True)
    w.allow_queue(True)
    for i in range(12):
        assert w.try_queue_success(0.01 * i)
    assert counts(w) == (5, 0, 0, 0)
    # The last five queued durations are the window's.
    assert w.snapshot().total_duration == pytest.approx(0.01 * (7 + 8 + 9 + 10 + 11))


def test_count_window_queue_wraps_around_the_ring() -> None:
    w = CountWindow(5, SLOW)
    for failed in (True, False, True, False):
        w.record(0.0, failed)
    w.allow_queue(True)
    w.try_queue_success(0.0)
    w.try_queue_success(0.0)  # wraps: evicts slot 0 (a failure)
    w.try_queue_success(0.0)  # evicts slot 1 (a success)
    assert counts(w) == (5, 1, 0, 0)
    w.record(0.0, True)  # evicts slot 2 (a failure), adds one
    assert counts(w) == (5, 1, 0, 0)


def test_count_window_reset_turns_queueing_off_and_drops_queue() -> None:
    w = CountWindow(3, SLOW)
    w.allow_queue(True)
    w.try_queue_success(0.1)
    w.reset()
    assert counts(w) == (0, 0, 0, 0)
    assert not w.try_queue_success(0.1)


def test_count_window_queue_is_thread_safe() -> None:
    w = CountWindow(100_000, SLOW)
    w.allow_queue(True)
    lock = threading.Lock()

    def worker() -> None:
        for i in range(5_000):
            if i % 50 == 0:
                with lock:
                    w.record(0.0, True)
            else:
                assert w.try_queue_success(0.0)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with lock:
        assert counts(w) == (40_000, 800, 0, 0)


# --- TimeWindow --------------------------------------------------------------------------


def test_time_window_counts_calls_of_last_seconds() -> None:
    w = TimeWindow(3, SLOW)
    w.record(0.0, True, now=10.2)
    w.record(0.0, False, now=10.9)
    w.record(2.0, False, now=11.5)
    assert counts(w, 12.99) == (3, 1, 1, 0)
    # At 13.0 the window covers seconds 11, 12, 13: second 10 has expired.
    assert counts(w, 13.0) == (1, 0, 1, 0)
    assert counts(w, 14.0) == (0, 0, 0, 0)


def test_time_window_expiry_can_raise_failure_rate() -> None:
    w = TimeWindow(2, SLOW)
    for _ in range(3):
        w.record(0.0, False, now=0.5)
    w.record(0.0, True, now=1.5)
    assert w.snapshot(1.5).failure_rate == 25.0
    assert w.snapshot(2.0).failure_rate == 100.0


def test_time_window_long_gap_clears_everything() -> None:
    w = TimeWindow(5, SLOW)
    for s in range(5):
        w.record(0.1 * s, s % 2 == 0, now=float(s))
    assert counts(w, 4.0)[0] == 5
    assert counts(w, 1000.0) == (0, 0, 0, 0)
    assert w.snapshot(1000.0).total_duration == 0.0
    w.record(0.0, True, now=1000.5)
    assert counts(w, 1000.5) == (1, 1, 0, 0)
    assert counts(w, 1004.9) == (1, 1, 0, 0)
    assert counts(w, 1005.0) == (0, 0, 0, 0)


def test_time_window_older_now_counts_in_newest_bucket() -> None:
    w = TimeWindow(2, SLOW)
    w.record(0.0, False, now=5.0)
    w.record(0.0, True, now=4.0)  # a racing caller with an older timestamp
    assert counts(w, 5.0) == (2, 1, 0, 0)
    assert counts(w, 6.0) == (2, 1, 0, 0)
    assert counts(w, 7.0) == (0, 0, 0, 0)


def test_time_window_total_duration_and_reset() -> None:
    w = TimeWindow(4, SLOW)
    w.record(0.25, False, now=1.0)
    w.record(3.0, True, now=2.0)
    assert w.snapshot(2.0).total_duration == pytest.approx(3.25)
    assert w.snapshot(5.0).total_duration == pytest.approx(3.0)
    w.reset()
    assert counts(w, 5.0) == (0, 0, 0, 0)


def test_time_window_queueing_rules() -> None:
    w = TimeWindow(10, SLOW)
    w.allow_queue(True)
    assert not w.try_queue_success(0.1, 0.5), "no bucket yet: the first call takes the lock"
    w.record(0.0, False, now=0.5)
    assert w.try_queue_success(0.1, 0.7)
    assert not w.try_queue_success(2.0, 0.7), "slow"
    assert not w.try_queue_success(0.1, 1.0), "past the newest bucket: a roll needs the lock"
    assert counts(w, 0.9) == (2, 0, 0, 0)
    w.allow_queue(False)
    assert not w.try_queue_success(0.1, 0.9)


def test_time_window_queued_successes_go_to_newest_bucket_and_expire() -> None:
    w = TimeWindow(2, SLOW)
    w.record(0.0, True, now=3.2)
    w.allow_queue(True)
    for _ in range(5):
        assert w.try_queue_success(0.2, 3.6)
    assert counts(w, 4.5) == (6, 1, 0, 0)
    assert w.snapshot(4.5).total_duration == pytest.approx(1.0)
    assert counts(w, 5.0) == (0, 0, 0, 0)


def test_time_window_queue_is_bounded() -> None:
    w = TimeWindow(10, SLOW)
    w.record(0.0, False, now=0.0)
    w.allow_queue(True)
    accepted = sum(w.try_queue_success(0.0, 0.5) for _ in range(MAX_QUEUED_SUCCESSES + 10))
    assert accepted == MAX_QUEUED_SUCCESSES
    w.refresh(0.5)  # what the breaker's locked path does: the queue is empty again
    assert w.try_queue_success(0.0, 0.5)
    assert counts(w, 0.5) == (MAX_QUEUED_SUCCESSES + 2, 0, 0, 0)


def test_time_window_reset_turns_queueing_off() -> None:
    w = TimeWindow(3, SLOW)
    w.record(0.0, False, now=0.0)
    w.allow_queue(True)
    assert w.try_queue_success(0.0, 0.1)
    w.reset()
    w.record(0.0, False, now=0.2)
    assert not w.try_queue_success(0.0, 0.3)
    assert counts(w, 0.3) == (1, 0, 0, 0)


def _structure_size(root: object) -> int:
    """Bytes of the containers reachable from root (numbers excluded: fixed-size scalars)."""
    skip = (int, float, type(None), type, type(sys), type(_structure_size), type(len))
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def test_time_window_memory_does_not_grow_with_calls() -> None:
    def filled(calls: int) -> int:
        w = TimeWindow(10, SLOW)
        w.record(0.0, False, now=0.0)
        w.allow_queue(True)
        for i in range(calls):
            now = i / calls * 30  # spread over 30 s: rolls and expiries happen
            if not w.try_queue_success(0.001, now):
                w.record(0.001, i % 7 == 0, now)
        w.refresh(30.0)
        return _structure_size(w)

    assert filled(10) == filled(200_000)
