"""Per-revision traffic over the last five minutes: requests, 5xx answers, latency p50/p99.

The gateway records every answer it gives for a revision (the app's own answers and the
gateway's 502/503/504 on its behalf: a crash-looping revision must show as failing, not as
idle); the admin API reads the figures for the control plane's health answer. This is what
on-call reads to decide whether to roll back.

It sits on every request's path, so recording costs O(1), about a microsecond (BENCHMARKS.md),
and its memory is bounded whatever the traffic:

- each revision has a ring of BUCKETS buckets of BUCKET_SECONDS each. A request lands in
  the bucket of its ten seconds; a bucket whose turn comes round again is emptied first, so
  the figures cover the last WINDOW_SECONDS (in steps of BUCKET_SECONDS) and old traffic
  ages out without a timer;
- each bucket counts latencies in a fixed log-scale histogram of BINS bins, BINS_PER_DOUBLING
  to each doubling from MIN_MS up (a percentile is read as the upper edge of its bin, so it
  is never understated and at most 2^(1/4) ≈ 19% high), and keeps its largest latency,
  which caps the estimate (with few requests p99 is the slowest one);
- at most MAX_REVISIONS revisions are kept: a new one first pushes out those with no
  traffic in the window, then the one idle longest.

So a revision costs at most BUCKETS × (BINS × 4 bytes + a few counters) ≈ 15 KiB, and the
whole structure at most MAX_REVISIONS times that, whether it serves 1 or 10,000 requests a
second. Prometheus-style cumulative counters would need a scraper and a query language to
answer "the last five minutes"; HdrHistogram is finer than on-call needs and not bounded in
time. The clock is monotonic and settable, so tests move time instead of sleeping.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Callable, Iterable
from typing import Any

WINDOW_SECONDS = 300
BUCKET_SECONDS = 10
BUCKETS = WINDOW_SECONDS // BUCKET_SECONDS
MAX_REVISIONS = 1000
MIN_MS = 0.1  # Anything faster lands in the first bin.
MAX_MS = 86_400_000.0  # request_timeout's ceiling (a day); anything slower, in the last bin.
BINS_PER_DOUBLING = 4
BINS = int(math.log2(MAX_MS / MIN_MS) * BINS_PER_DOUBLING) + 2
_EMPTY = array("I", bytes(4 * BINS))


def bin_of(ms: float) -> int:
    """The histogram bin of a latency in milliseconds: bin i > 0 holds (edge(i-1), edge(i)]."""
    if ms <= MIN_MS:
        return 0
    return min(BINS - 1, math.ceil(math.log2(ms / MIN_MS) * BINS_PER_DOUBLING))


def edge(index: int) -> float:
    """The upper edge (ms) of bin `index`."""
    return MIN_MS * 2 ** (index / BINS_PER_DOUBLING)


class Bucket:
    __slots__ = ("epoch", "requests", "errors", "max_ms", "hist")

    def __init__(self) -> None:
        self.epoch = -1
        self.requests = 0
        self.errors = 0
        self.max_ms = 0.0
        self.hist = _EMPTY

    def reset(self, epoch: int) -> None:
        self.epoch = epoch
        self.requests = self.errors = 0
        self.max_ms = 0.0
        self.hist = array("I", _EMPTY)  # A copy: the shared zeroes are never written.


class _Revision:
    __slots__ = ("ring", "last")

    def __init__(self) -> None:
        self.ring = [Bucket() for _ in range(BUCKETS)]
        self.last = -1  # The epoch of its latest request.


class Traffic:
    """The figures of every revision the gateway served in the window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.revisions: dict[str, _Revision] = {}

    # -- the hot path ---------------------------------------------------------------------

    def record(self, revision: str, status: int, seconds: float, now: float | None = None) -> None:
        """One answer for `revision`, with its status and latency; `now` saves the caller's
        second clock read when it has just taken one (the same clock as `self.clock`)."""
        epoch = int((self.clock() if now is None else now) // BUCKET_SECONDS)
        stats = self.revisions.get(revision)
        if stats is None:
            stats = self._add(revision, epoch)
        bucket = stats.ring[epoch % BUCKETS]
        if bucket.epoch != epoch:
            bucket.reset(epoch)
        bucket.requests += 1
        if status >= 500:
            bucket.errors += 1
        ms = seconds * 1000.0
        bucket.hist[bin_of(ms)] += 1
        if ms > bucket.max_ms:
            bucket.max_ms = ms
        stats.last = epoch

    def _add(self, revision: str, epoch: int) -> _Revision:
        if len(self.revisions) >= MAX_REVISIONS:
            # Rare (a new revision while the table is full), so a scan is fine here.
            oldest = epoch - BUCKETS
            for key in [k for k, s in self.revisions.items() if s.last <= oldest]:
                del self.revisions[key]
            if len(self.revisions) >= MAX_REVISIONS:
                del self.revisions[min(self.revisions, key=lambda k: self.revisions[k].last)]
        stats = self.revisions[revision] = _Revision()
        return stats

    # -- reading --------------------------------------------------------------------------

    def figures(self, revision: str, now: float | None = None) -> dict[str, Any]:
        """{requests, errors_5xx, error_rate, p50_ms, p99_ms, window_s} over the window;
        the rate is a fraction (0.008 for 0.8%) and the percentiles None without traffic."""
        epoch = int((self.clock() if now is None else now) // BUCKET_SECONDS)
        stats = self.revisions.get(revision)
        live = [b for b in stats.ring if epoch - BUCKETS < b.epoch <= epoch] if stats else []
        requests = sum(b.requests for b in live)
        errors = sum(b.errors for b in live)
        p50 = p99 = None
        if requests:
            hist = [sum(column) for column in zip(*(b.hist for b in live), strict=True)]
            slowest = max(b.max_ms for b in live)
            p50 = _percentile(hist, requests, 0.50, slowest)
            p99 = _percentile(hist, requests, 0.99, slowest)
        return {
            "requests": requests,
            "errors_5xx": errors,
            "error_rate": round(errors / requests, 4) if requests else 0.0,
            "p50_ms": p50,
            "p99_ms": p99,
            "window_s": WINDOW_SECONDS,
        }

    def active(self, now: float | None = None) -> Iterable[str]:
        """The revisions with traffic in the window."""
        epoch = int((self.clock() if now is None else now) // BUCKET_SECONDS)
        return [k for k, s in self.revisions.items() if s.last > epoch - BUCKETS]


def _percentile(hist: list[int], total: int, q: float, slowest: float) -> float:
    """The upper edge of the bin holding the q-th latency (nearest rank), capped by the
    slowest latency seen, in ms rounded to 0.01."""
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index, count in enumerate(hist):
        seen += count
        if seen >= rank:
            return round(min(edge(index), slowest), 2)
    return round(slowest, 2)
