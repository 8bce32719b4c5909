"""BusyClock: the GPU-busy measurement is exact and its memory bounded, checked with simulated CUDA events."""

from __future__ import annotations

import random

import pytest

from densevid.pipeline.engine import BusyClock


class FakeDevice:
    """A device clock (ms): an event is complete once the clock has passed its time."""

    def __init__(self) -> None:
        self.now = 0.0


class FakeEvent:
    def __init__(self, device: FakeDevice, time_ms: float) -> None:
        self.device, self.time_ms = device, time_ms

    def query(self) -> bool:
        return self.device.now >= self.time_ms

    def synchronize(self) -> None:
        self.device.now = max(self.device.now, self.time_ms)

    def elapsed_time(self, other: "FakeEvent") -> float:
        assert self.query() and other.query(), "elapsed_time needs both events completed (as CUDA's does)"
        return other.time_ms - self.time_ms


def _union(spans):
    total, reach = 0.0, None
    for lo, hi in sorted(spans):
        if reach is None or lo > reach:
            total, reach = total + hi - lo, hi
        elif hi > reach:
            total, reach = total + hi - reach, hi
    return total


@pytest.mark.parametrize("seed,streams", [(0, 1), (1, 2), (2, 4), (3, 8)])
def test_busy_time_is_the_union_of_the_calls_and_memory_stays_bounded(seed, streams):
    rng = random.Random(seed)
    device = FakeDevice()
    clock = BusyClock(FakeEvent(device, 0.0), fold_every=8)
    stream_end = [0.0] * streams
    spans, most_held = [], 0
    for _ in range(3000):
        # the engine's permits: at most 2 frames per worker in flight, so the host waits for the device
        running = sorted(end for _, end in spans if end > device.now)
        if len(running) >= 2 * streams:
            device.now = running[len(running) - 2 * streams]
        s = rng.randrange(streams)
        # a call recorded now runs on its stream after the stream's previous call, never before "now"
        start = max(stream_end[s], device.now + rng.uniform(0, 5))
        if rng.random() < 0.1:
            start += rng.uniform(5, 50)  # an idle gap
        end = start + rng.uniform(0.5, 20)
        stream_end[s] = end
        spans.append((start, end))
        clock.add(FakeEvent(device, start), FakeEvent(device, end))
        device.now += rng.uniform(0, 6)  # the device moves on while the host records more work
        most_held = max(most_held, len(clock._pending) + len(clock._spans))
    busy, summed = clock.totals()
    assert busy == pytest.approx(_union(spans) / 1000, rel=1e-12)
    assert summed == pytest.approx(sum(hi - lo for lo, hi in spans) / 1000, rel=1e-12)
    assert clock.calls == 3000
    assert most_held < 8 + 8 * streams  # what is pending or may still merge, not the whole video


def test_no_calls_no_time():
    clock = BusyClock(FakeEvent(FakeDevice(), 0.0))
    assert clock.totals() == (0.0, 0.0) and clock.calls == 0
