"""Event-time bucketing for the KPI engine: intervals, "today", rolling sub-buckets, lateness.

Pure functions of explicit timestamps: nothing here reads the wall clock. The engine's time unit is
epoch milliseconds as ``int`` (UTC); `to_ms` / `from_ms` convert to and from aware datetimes.
Faust's windowed tables are not used because they expire by wall clock; the engine keys its own
tables by the bucket starts computed here (KPI specification, section 2).

Decisions
---------
Intervals (`SiteClock.interval_start` / `interval_end`)
    Clock-aligned in the site's LOCAL time: an interval starts where the local wall time is a
    multiple of the interval length counted from local midnight (09:00, 09:15, ...). The interval
    length must divide a day (the configuration allows 15, 30 and 60 minutes).
    An interval is identified by its UTC start in epoch ms, never by its local label, so:

    * fall-back: the repeated local hour yields distinct intervals (Europe/Berlin 2026-10-25 has
      02:00+02:00 and 02:00+01:00, one hour apart in UTC);
    * spring-forward: skipped local times produce no intervals (Europe/Berlin 2026-03-29 goes from
      01:45+01:00 straight to 03:00+02:00);
    * every UTC-offset change is also an interval boundary, so no interval ever spans an offset
      change. In zones whose changes happen at aligned local times (nearly all of them, including
      America/Santiago and Asia/Beirut, which change at midnight) this adds no boundary. Where a
      change falls in the middle of an interval (Australia/Lord_Howe shifts by 30 minutes, so with
      60-minute intervals it happens at local :30), the interval is cut there: one interval is
      shorter than the configured length and starts at a local time that is not aligned
      (e.g. 02:30+11:00). Likewise America/St_Johns and America/Goose_Bay changed at 00:01 local
      until 2011, giving a 1-minute interval before the change and one starting at 01:01 (or
      23:01) after it. Intervals are therefore never longer than the configured length and
      always tile time without gaps or overlaps.
    * zones with a fractional offset (Asia/Kolkata +05:30, Australia/Adelaide +09:30/+10:30,
      Asia/Kathmandu +05:45): alignment is to the LOCAL clock, so 60-minute intervals run
      09:00-10:00 local (03:30-04:30 UTC in Kolkata), as the floor reports them; they are not
      aligned to UTC hours.

    Assumption: the zone changes its offset at most once within one interval length (true of the
    whole tz database for lengths up to 60 minutes).

Today (`SiteClock.day_start` / `day_end`)
    The local day containing ``ts`` starts at local midnight, or at ``reset_hour``:00 for queues
    with a day reset hour: with reset hour 6, an event at 05:59 local belongs to the previous day.
    The start is a UTC instant, so days are 23 h or 25 h long on DST days. If the start time occurs
    twice (America/Havana 2026-11-01 repeats 00:00-01:00), the first occurrence is used; if it does
    not exist (America/Havana 2026-03-08, America/Santiago 2026-09-06, Asia/Beirut 2026-03-29 skip
    from 00:00 to 01:00), the first existing instant after it (the offset change, local 01:00).
    Always ``day_start(ts) <= ts < day_end(ts)`` and days never go back: where a fall-back jumps
    the clock back across the reset time after the new day has begun (America/St_Johns 2010-11-07,
    00:01 -> 23:01 of the previous date), the repeated evening belongs to the new day.

Sub-buckets and rolling windows (`sub_bucket`, `rolling_window_buckets`)
    Sub-buckets are absolute: ``ts`` floored to a multiple of the sub-bucket size since the epoch,
    independent of the zone. A rolling window of W minutes ending at ``now`` is the W*60/size
    sub-buckets ending with the (partial) one that contains ``now``: a bucket counts iff
    ``start >= sub_bucket(now) + size - W`` (i.e. ``now`` rounded up to the end of its
    sub-bucket, minus W) and ``start <= now``. 5/15/60 minutes with 10 s buckets are exactly
    30/90/360 buckets; the time covered is W rounded to whole sub-buckets (between W - size and W of
    elapsed time before ``now``, plus ``now``'s own bucket).

Retention and lateness (`retained_since`, `is_too_late`)
    Buckets are kept for today and the whole previous local day (spec: "at least today and the
    previous interval's full day"): the oldest accepted event time is the start of the local day
    before the watermark's day (using the same reset hour as "today"). Earlier events are
    ``too_late``. Before any event is seen (no watermark) nothing is too late. An event exactly at
    the cut-off is accepted.

Watermark (`Watermark`)
    The newest event time seen, overall and per key (partition). It never moves backwards.

Labels (`SiteClock.label`)
    RFC 3339 local time with its UTC offset, e.g. ``2026-10-25T02:00:00+01:00``; UTC is written
    ``+00:00``. Milliseconds are shown only when non-zero.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from streams.config import SiteSettings

MS_PER_SECOND = 1000
MS_PER_MINUTE = 60 * MS_PER_SECOND
MS_PER_HOUR = 60 * MS_PER_MINUTE
MS_PER_DAY = 24 * MS_PER_HOUR

_ONE_MS = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_ms(dt: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive datetimes are refused: their zone is unknown)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: give it a time zone")
    return (dt - _EPOCH) // _ONE_MS


def from_ms(ts_ms: int, tz: ZoneInfo | timezone = timezone.utc) -> datetime:
    """Aware datetime of epoch milliseconds, in ``tz`` (UTC by default)."""
    return (_EPOCH + timedelta(milliseconds=ts_ms)).astimezone(tz)


class SiteClock:
    """Local-time intervals, days, sub-buckets and retention for one site time zone."""

    __slots__ = ("zone", "tz", "interval_minutes", "interval_ms", "sub_bucket_seconds", "sub_bucket_ms",
                 "day_reset_hour", "_last_interval")

    def __init__(self, zone: str = "UTC", interval_minutes: int = 15, sub_bucket_seconds: int = 10,
                 day_reset_hour: int = 0) -> None:
        if interval_minutes <= 0 or (24 * 60) % interval_minutes:
            raise ValueError(f"interval_minutes must divide a day, got {interval_minutes}")
        if sub_bucket_seconds <= 0:
            raise ValueError(f"sub_bucket_seconds must be positive, got {sub_bucket_seconds}")
        _check_reset_hour(day_reset_hour)
        self.zone = zone
        self.tz = ZoneInfo(zone)
        self.interval_minutes = interval_minutes
        self.interval_ms = interval_minutes * MS_PER_MINUTE
        self.sub_bucket_seconds = sub_bucket_seconds
        self.sub_bucket_ms = sub_bucket_seconds * MS_PER_SECOND
        self.day_reset_hour = day_reset_hour
        self._last_interval = (0, 0)   # the last interval `interval` computed: most lookups fall in it

    @classmethod
    def from_settings(cls, site: SiteSettings, sub_bucket_seconds: int = 10, day_reset_hour: int = 0) -> SiteClock:
        return cls(site.timezone, site.interval_minutes, sub_bucket_seconds, day_reset_hour)

    def __repr__(self) -> str:
        return (f"SiteClock({self.zone!r}, interval_minutes={self.interval_minutes}, "
                f"sub_bucket_seconds={self.sub_bucket_seconds}, day_reset_hour={self.day_reset_hour})")

    # -- local time -------------------------------------------------------------------------------

    def local(self, ts_ms: int) -> datetime:
        """The aware local datetime of ``ts_ms`` in the site zone."""
        return from_ms(ts_ms, self.tz)

    def utc_offset_ms(self, ts_ms: int) -> int:
        """The site's UTC offset at ``ts_ms``, in ms (local wall time = ts + offset)."""
        # Offsets change on whole seconds, so the offset of the containing second is exact.
        return datetime.fromtimestamp(ts_ms // MS_PER_SECOND, self.tz).utcoffset() // _ONE_MS

    def _first_with_offset(self, lo: int, hi: int, offset: int) -> int:
        """Smallest t in (lo, hi] with offset(t) == offset, given offset(lo) != offset == offset(hi)."""
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.utc_offset_ms(mid) == offset:
                hi = mid
            else:
                lo = mid
        return hi

    def _first_without_offset(self, lo: int, hi: int, offset: int) -> int:
        """Smallest t in (lo, hi] with offset(t) != offset, given offset(lo) == offset != offset(hi)."""
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.utc_offset_ms(mid) == offset:
                lo = mid
            else:
                hi = mid
        return hi

    # -- intervals --------------------------------------------------------------------------------

    def interval_start(self, ts_ms: int) -> int:
        """UTC start (ms) of the local clock-aligned interval containing ``ts_ms``."""
        offset = self.utc_offset_ms(ts_ms)
        start = ts_ms - (ts_ms + offset) % self.interval_ms
        if self.utc_offset_ms(start) != offset:
            # The offset changed inside (start, ts]: the change is a boundary.
            start = self._first_with_offset(start, ts_ms, offset)
        return start

    def interval_end(self, ts_ms: int) -> int:
        """UTC end (ms, exclusive) of the interval containing ``ts_ms``: the next interval's start."""
        offset = self.utc_offset_ms(ts_ms)
        end = ts_ms - (ts_ms + offset) % self.interval_ms + self.interval_ms
        if self.utc_offset_ms(end - 1) != offset:
            # The offset changes inside (ts, end): the change is a boundary.
            end = self._first_without_offset(ts_ms, end - 1, offset)
        return end

    def interval(self, ts_ms: int) -> tuple[int, int]:
        """``(start, end)`` of the interval containing ``ts_ms``; ``start <= ts_ms < end``."""
        last = self._last_interval
        if last[0] <= ts_ms < last[1]:   # intervals partition time: every instant of one has its bounds
            return last
        last = self._last_interval = (self.interval_start(ts_ms), self.interval_end(ts_ms))
        return last

    def previous_interval_start(self, ts_ms: int) -> int:
        """UTC start of the interval before the one containing ``ts_ms``."""
        return self.interval_start(self.interval_start(ts_ms) - 1)

    def next_interval_start(self, ts_ms: int) -> int:
        """UTC start of the interval after the one containing ``ts_ms`` (= its end)."""
        return self.interval_end(ts_ms)

    def intervals_between(self, from_ms: int, to_ms: int) -> Iterator[int]:
        """Starts of the intervals overlapping ``[from_ms, to_ms)``, in order."""
        if from_ms >= to_ms:
            return
        start = self.interval_start(from_ms)
        while start < to_ms:
            yield start
            start = self.interval_end(start)

    def label(self, interval_start_ms: int) -> str:
        """RFC 3339 local time with offset, e.g. ``2026-10-25T02:00:00+01:00``."""
        spec = "milliseconds" if interval_start_ms % MS_PER_SECOND else "seconds"
        return self.local(interval_start_ms).isoformat(timespec=spec)

    # -- days -------------------------------------------------------------------------------------

    def _local_instant(self, day: date, hour: int) -> int:
        """UTC ms of ``day`` ``hour``:00 local: its first occurrence, or if skipped the first instant after."""
        wall = datetime.combine(day, time(hour))
        candidates = []
        for fold in (0, 1):
            ts = to_ms(wall.replace(tzinfo=self.tz, fold=fold))
            if self.local(ts).replace(tzinfo=None) == wall:
                candidates.append(ts)
            else:
                candidates.append(None)
        existing = [c for c in candidates if c is not None]
        if existing:
            return min(existing)
        # In a gap: fold=0 resolves with the offset before the change (lands after it), fold=1 with
        # the offset after it (lands before it); the change itself is the first instant after.
        a = to_ms(wall.replace(tzinfo=self.tz, fold=0))
        b = to_ms(wall.replace(tzinfo=self.tz, fold=1))
        lo, hi = min(a, b), max(a, b)
        return self._first_without_offset(lo, hi, self.utc_offset_ms(lo))

    def _day_of(self, ts_ms: int, reset_hour: int) -> date:
        return (self.local(ts_ms).replace(tzinfo=None) - timedelta(hours=reset_hour)).date()

    def day_start(self, ts_ms: int, reset_hour: int | None = None) -> int:
        """UTC start (ms) of the local day containing ``ts_ms``, days starting at ``reset_hour``:00 local.

        ``reset_hour`` defaults to the clock's ``day_reset_hour`` (0: local midnight).
        """
        hour = self._reset_hour(reset_hour)
        day = self._day_of(ts_ms, hour)
        # Guards for zones whose wall clock jumps across the reset time (keeps start <= ts < end).
        following = self._local_instant(day + timedelta(days=1), hour)
        if following <= ts_ms:
            return following
        start = self._local_instant(day, hour)
        while start > ts_ms:
            day -= timedelta(days=1)
            start = self._local_instant(day, hour)
        return start

    def day_end(self, ts_ms: int, reset_hour: int | None = None) -> int:
        """UTC end (ms, exclusive) of the local day containing ``ts_ms``: the next day's start."""
        hour = self._reset_hour(reset_hour)
        day = self._day_of(self.day_start(ts_ms, hour), hour) + timedelta(days=1)
        end = self._local_instant(day, hour)
        while end <= ts_ms:  # same guard as day_start
            day += timedelta(days=1)
            end = self._local_instant(day, hour)
        return end

    def previous_day_start(self, ts_ms: int, reset_hour: int | None = None) -> int:
        """UTC start of the local day before the one containing ``ts_ms``."""
        hour = self._reset_hour(reset_hour)
        return self.day_start(self.day_start(ts_ms, hour) - 1, hour)

    def _reset_hour(self, reset_hour: int | None) -> int:
        if reset_hour is None:
            return self.day_reset_hour
        _check_reset_hour(reset_hour)
        return reset_hour

    # -- sub-buckets and rolling windows ---------------------------------------------------------

    def sub_bucket(self, ts_ms: int) -> int:
        """Start of the absolute (UTC, zone-independent) sub-bucket containing ``ts_ms``."""
        return ts_ms - ts_ms % self.sub_bucket_ms

    def buckets_per_window(self, window_minutes: int) -> int:
        window_ms = window_minutes * MS_PER_MINUTE
        if window_minutes <= 0 or window_ms % self.sub_bucket_ms:
            raise ValueError(f"a {window_minutes}-minute window is not a whole number of "
                             f"{self.sub_bucket_seconds} s sub-buckets")
        return window_ms // self.sub_bucket_ms

    def rolling_window_buckets(self, now_ms: int, window_minutes: int) -> range:
        """Sub-bucket starts in the trailing window ending at ``now_ms``.

        A bucket counts iff ``sub_bucket(now) + size - window <= start <= sub_bucket(now)``: the
        last ``window / size`` buckets, including the current partial one.
        """
        count = self.buckets_per_window(window_minutes)
        last = self.sub_bucket(now_ms)
        return range(last - (count - 1) * self.sub_bucket_ms, last + self.sub_bucket_ms, self.sub_bucket_ms)

    # -- retention --------------------------------------------------------------------------------

    def retained_since(self, watermark_ms: int, reset_hour: int | None = None) -> int:
        """Oldest event time still accepted: the start of the local day before the watermark's day."""
        return self.previous_day_start(watermark_ms, reset_hour)

    def is_too_late(self, ts_ms: int, watermark_ms: int | None, reset_hour: int | None = None) -> bool:
        """Whether an event at ``ts_ms`` is older than retention (dead-letter reason ``too_late``)."""
        if watermark_ms is None:
            return False
        return ts_ms < self.retained_since(watermark_ms, reset_hour)


def _check_reset_hour(hour: int) -> None:
    if not isinstance(hour, int) or not 0 <= hour <= 23:
        raise ValueError(f"day reset hour must be an integer 0..23, got {hour!r}")


class Watermark:
    """The newest event time seen, overall (`value`) and per key, e.g. per partition (`get`).

    `advance` never moves a watermark backwards and returns whether it moved.
    """

    __slots__ = ("_value", "_by_key")

    def __init__(self, value: int | None = None) -> None:
        self._value = value
        self._by_key: dict[Hashable, int] = {}

    @property
    def value(self) -> int | None:
        """The newest event time seen under any key (None before the first event)."""
        return self._value

    def get(self, key: Hashable) -> int | None:
        """The newest event time seen under ``key`` (None if none)."""
        return self._by_key.get(key)

    def keys(self) -> list[Hashable]:
        return list(self._by_key)

    def advance(self, ts_ms: int, key: Hashable | None = None) -> bool:
        """Record an event time. Returns True if the watermark (of ``key`` if given, else overall) moved."""
        moved_overall = self._value is None or ts_ms > self._value
        if moved_overall:
            self._value = ts_ms
        if key is None:
            return moved_overall
        current = self._by_key.get(key)
        if current is None or ts_ms > current:
            self._by_key[key] = ts_ms
            return True
        return False

    def __repr__(self) -> str:
        return f"Watermark(value={self._value}, by_key={self._by_key})"
