"""Event-time bucketing (streams.kpi.windows): explicit timestamps only, no wall clock."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from streams.kpi.windows import MS_PER_HOUR, MS_PER_MINUTE, SiteClock, Watermark, from_ms, to_ms

UTC = timezone.utc
H = MS_PER_HOUR
M = MS_PER_MINUTE


def utc(*args: int) -> int:
    """Epoch ms of a UTC wall time."""
    return to_ms(datetime(*args, tzinfo=UTC))


def local(zone: str, *args: int, fold: int = 0) -> int:
    """Epoch ms of a local wall time (fold=1: the second occurrence of a repeated time)."""
    return to_ms(datetime(*args, tzinfo=ZoneInfo(zone), fold=fold))


def labels(clock: SiteClock, start: int, end: int) -> list[str]:
    return [clock.label(s) for s in clock.intervals_between(start, end)]


# -- helpers --------------------------------------------------------------------------------------

def test_ms_conversions_round_trip():
    dt = datetime(2026, 3, 29, 3, 0, 0, 123000, tzinfo=ZoneInfo("Europe/Berlin"))
    ms = to_ms(dt)
    assert ms == utc(2026, 3, 29, 1, 0, 0) + 123
    assert from_ms(ms) == dt
    assert from_ms(ms, ZoneInfo("Europe/Berlin")).utcoffset() == timedelta(hours=2)
    assert to_ms(datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)) == -1
    with pytest.raises(ValueError):
        to_ms(datetime(2026, 1, 1))


def test_invalid_parameters():
    with pytest.raises(ValueError):
        SiteClock("UTC", interval_minutes=7)
    with pytest.raises(ValueError):
        SiteClock("UTC", sub_bucket_seconds=0)
    with pytest.raises(ValueError):
        SiteClock("UTC", day_reset_hour=24)
    with pytest.raises(ValueError):
        SiteClock("UTC").day_start(0, reset_hour=-1)
    with pytest.raises(ValueError):
        SiteClock("UTC", sub_bucket_seconds=7).rolling_window_buckets(0, 5)


def test_from_settings():
    from streams.config import SiteSettings

    clock = SiteClock.from_settings(SiteSettings(timezone="Europe/Berlin", interval_minutes=30))
    assert (clock.zone, clock.interval_minutes, clock.sub_bucket_seconds) == ("Europe/Berlin", 30, 10)


# -- interval alignment ---------------------------------------------------------------------------

@pytest.mark.parametrize(("minutes", "start", "end"), [
    (15, utc(2026, 6, 10, 9, 0), utc(2026, 6, 10, 9, 15)),
    (30, utc(2026, 6, 10, 9, 0), utc(2026, 6, 10, 9, 30)),
    (60, utc(2026, 6, 10, 9, 0), utc(2026, 6, 10, 10, 0)),
])
def test_alignment_utc(minutes, start, end):
    clock = SiteClock("UTC", minutes)
    ts = utc(2026, 6, 10, 9, 14, 59) + 999
    assert clock.interval(ts) == (start, end)
    assert clock.interval(start) == (start, end)          # a boundary belongs to the interval it starts
    assert clock.interval_start(end) == end                # ... and not to the one it ends
    assert clock.previous_interval_start(ts) == start - minutes * M
    assert clock.next_interval_start(ts) == end
    assert clock.label(start) == "2026-06-10T09:00:00+00:00"


@pytest.mark.parametrize(("minutes", "expected_local_start"), [(15, (10, 45)), (30, (10, 30)), (60, (10, 0))])
def test_alignment_berlin(minutes, expected_local_start):
    clock = SiteClock("Europe/Berlin", minutes)
    ts = local("Europe/Berlin", 2026, 6, 10, 10, 52, 30)    # CEST, UTC+2
    start = clock.interval_start(ts)
    assert start == local("Europe/Berlin", 2026, 6, 10, *expected_local_start)
    assert clock.interval_end(ts) - start == minutes * M
    assert clock.label(start) == f"2026-06-10T{expected_local_start[0]:02d}:{expected_local_start[1]:02d}:00+02:00"
    # Winter (CET, UTC+1) aligns to the local clock too.
    winter = local("Europe/Berlin", 2026, 1, 15, 8, 59, 59)
    assert clock.label(clock.interval_start(winter)).startswith("2026-01-15T08:")
    assert clock.interval_end(winter) == local("Europe/Berlin", 2026, 1, 15, 9, 0)


# -- DST ------------------------------------------------------------------------------------------

def test_berlin_spring_forward_skips_local_hour():
    clock = SiteClock("Europe/Berlin", 15)
    change = utc(2026, 3, 29, 1, 0)                         # 02:00 CET -> 03:00 CEST
    before = change - 1
    assert clock.interval(before) == (change - 15 * M, change)
    assert clock.label(clock.interval_start(before)) == "2026-03-29T01:45:00+01:00"
    assert clock.interval(change) == (change, change + 15 * M)
    assert clock.label(change) == "2026-03-29T03:00:00+02:00"
    assert clock.previous_interval_start(change) == change - 15 * M
    got = labels(clock, change - 30 * M, change + 30 * M)
    assert got == ["2026-03-29T01:30:00+01:00", "2026-03-29T01:45:00+01:00",
                   "2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"]
    # The 23-hour day has 92 quarter hours and none of them is labelled 02:xx.
    day = list(clock.intervals_between(local("Europe/Berlin", 2026, 3, 29), local("Europe/Berlin", 2026, 3, 30)))
    assert len(day) == 92
    assert not any("T02:" in clock.label(s) for s in day)
    for minutes in (30, 60):
        c = SiteClock("Europe/Berlin", minutes)
        assert c.interval(change - 1) == (change - minutes * M, change)
        assert c.interval(change) == (change, change + minutes * M)


def test_berlin_fall_back_has_two_distinct_0200_intervals():
    clock = SiteClock("Europe/Berlin", 15)
    first = local("Europe/Berlin", 2026, 10, 25, 2, 5, fold=0)     # 02:05 CEST
    second = local("Europe/Berlin", 2026, 10, 25, 2, 5, fold=1)    # 02:05 CET, one hour later
    assert second - first == H
    a, b = clock.interval(first), clock.interval(second)
    assert a == (utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 15))
    assert b == (utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 1, 15))
    assert clock.label(a[0]) == "2026-10-25T02:00:00+02:00"
    assert clock.label(b[0]) == "2026-10-25T02:00:00+01:00"
    # The change itself (03:00 CEST = 02:00 CET) is a boundary; intervals tile through it.
    change = utc(2026, 10, 25, 1, 0)
    assert clock.interval(change - 1) == (change - 15 * M, change)
    assert clock.previous_interval_start(change) == change - 15 * M
    got = labels(clock, utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30))
    assert got == ["2026-10-25T02:30:00+02:00", "2026-10-25T02:45:00+02:00",
                   "2026-10-25T02:00:00+01:00", "2026-10-25T02:15:00+01:00"]
    day = list(clock.intervals_between(local("Europe/Berlin", 2026, 10, 25), local("Europe/Berlin", 2026, 10, 26)))
    assert len(day) == 100
    assert len(set(day)) == 100
    hourly = SiteClock("Europe/Berlin", 60)
    assert hourly.interval(first) == (utc(2026, 10, 25, 0), utc(2026, 10, 25, 1))
    assert hourly.interval(second) == (utc(2026, 10, 25, 1), utc(2026, 10, 25, 2))


def test_new_york_dst_days():
    clock = SiteClock("America/New_York", 30)
    spring = utc(2026, 3, 8, 7, 0)                          # 02:00 EST -> 03:00 EDT
    assert labels(clock, spring - H, spring + H) == [
        "2026-03-08T01:00:00-05:00", "2026-03-08T01:30:00-05:00",
        "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"]
    fall = utc(2026, 11, 1, 6, 0)                           # 02:00 EDT -> 01:00 EST
    assert labels(clock, fall - H, fall + H) == [
        "2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:00:00-05:00", "2026-11-01T01:30:00-05:00"]
    edt = local("America/New_York", 2026, 11, 1, 1, 40, fold=0)
    est = local("America/New_York", 2026, 11, 1, 1, 40, fold=1)
    assert clock.interval_start(edt) == utc(2026, 11, 1, 5, 30)
    assert clock.interval_start(est) == utc(2026, 11, 1, 6, 30)
    assert clock.previous_interval_start(est) == utc(2026, 11, 1, 6, 0)
    assert clock.day_end(edt) - clock.day_start(edt) == 25 * H
    assert clock.day_end(spring) - clock.day_start(spring) == 23 * H
    assert clock.day_start(est) == utc(2026, 11, 1, 4, 0)


# -- fractional offsets ---------------------------------------------------------------------------

def test_kolkata_half_hour_offset_aligns_to_local_clock():
    ts = local("Asia/Kolkata", 2026, 5, 1, 9, 40)           # 04:10 UTC
    hourly = SiteClock("Asia/Kolkata", 60)
    assert hourly.interval(ts) == (utc(2026, 5, 1, 3, 30), utc(2026, 5, 1, 4, 30))
    assert hourly.label(hourly.interval_start(ts)) == "2026-05-01T09:00:00+05:30"
    quarter = SiteClock("Asia/Kolkata", 15)
    assert quarter.interval(ts) == (utc(2026, 5, 1, 4, 0), utc(2026, 5, 1, 4, 15))
    assert quarter.label(quarter.interval_start(ts)) == "2026-05-01T09:30:00+05:30"
    assert SiteClock("Asia/Kathmandu", 60).label(SiteClock("Asia/Kathmandu", 60).interval_start(ts)) == \
        "2026-05-01T09:00:00+05:45"
    assert SiteClock("Asia/Kolkata").day_start(ts) == utc(2026, 4, 30, 18, 30)


def test_adelaide_half_hour_offset_with_dst():
    clock = SiteClock("Australia/Adelaide", 60)
    change = utc(2026, 4, 4, 16, 30)                        # 03:00 ACDT (+10:30) -> 02:00 ACST (+09:30)
    assert labels(clock, change - 2 * H, change + 2 * H) == [
        "2026-04-05T01:00:00+10:30", "2026-04-05T02:00:00+10:30",
        "2026-04-05T02:00:00+09:30", "2026-04-05T03:00:00+09:30"]
    assert clock.interval(change) == (change, change + H)
    assert clock.day_end(change) - clock.day_start(change) == 25 * H
    spring = utc(2026, 10, 3, 16, 30)                       # 02:00 ACST -> 03:00 ACDT
    assert labels(clock, spring - H, spring + H) == ["2026-10-04T01:00:00+09:30", "2026-10-04T03:00:00+10:30"]


def test_lord_howe_half_hour_shift_cuts_an_interval():
    """A 30-minute DST shift at a non-aligned local time: the change is a boundary, one interval is short."""
    clock = SiteClock("Australia/Lord_Howe", 60)
    spring = utc(2026, 10, 3, 15, 30)                       # 02:00 +10:30 -> 02:30 +11:00
    assert labels(clock, spring - H, spring + H) == [
        "2026-10-04T01:00:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-04T03:00:00+11:00"]
    assert clock.interval(spring) == (spring, spring + 30 * M)
    assert clock.interval(spring - 1) == (spring - H, spring)
    fall = utc(2026, 4, 4, 15, 0)                           # 02:00 +11:00 -> 01:30 +10:30
    assert labels(clock, fall - H, fall + H) == [
        "2026-04-05T01:00:00+11:00", "2026-04-05T01:30:00+10:30", "2026-04-05T02:00:00+10:30"]
    assert clock.interval(fall + 29 * M) == (fall, fall + 30 * M)
    assert clock.previous_interval_start(fall + 30 * M) == fall


# -- days -----------------------------------------------------------------------------------------

def test_day_start_on_23_and_25_hour_days():
    clock = SiteClock("Europe/Berlin")
    spring = local("Europe/Berlin", 2026, 3, 29, 12)
    assert clock.day_start(spring) == utc(2026, 3, 28, 23)
    assert clock.day_end(spring) == utc(2026, 3, 29, 22)
    fall = local("Europe/Berlin", 2026, 10, 25, 2, 30, fold=1)
    assert clock.day_start(fall) == utc(2026, 10, 24, 22)
    assert clock.day_end(fall) == utc(2026, 10, 25, 23)
    assert clock.day_end(fall) - clock.day_start(fall) == 25 * H
    # Boundaries: midnight belongs to the day it starts.
    midnight = local("Europe/Berlin", 2026, 10, 26)
    assert clock.day_start(midnight) == midnight
    assert clock.day_start(midnight - 1) == utc(2026, 10, 24, 22)
    assert clock.previous_day_start(midnight) == utc(2026, 10, 24, 22)


@pytest.mark.parametrize(("zone", "ts", "expected_start", "expected_label", "hours"), [
    # Cuba: 2026-03-08 00:00 -05 -> 01:00 -04; local midnight does not exist.
    ("America/Havana", utc(2026, 3, 8, 12), utc(2026, 3, 8, 5), "2026-03-08T01:00:00-04:00", 23),
    # Chile: 2026-09-06 00:00 -04 -> 01:00 -03.
    ("America/Santiago", utc(2026, 9, 6, 12), utc(2026, 9, 6, 4), "2026-09-06T01:00:00-03:00", 23),
    # Lebanon: 2026-03-29 00:00 +02 -> 01:00 +03.
    ("Asia/Beirut", utc(2026, 3, 29, 12), utc(2026, 3, 28, 22), "2026-03-29T01:00:00+03:00", 23),
])
def test_day_start_where_midnight_is_skipped(zone, ts, expected_start, expected_label, hours):
    tz = ZoneInfo(zone)
    # The premise, checked against the tz database: local midnight does not round-trip.
    naive = datetime(*from_ms(expected_start, tz).timetuple()[:3])
    for fold in (0, 1):
        aware = naive.replace(tzinfo=tz, fold=fold)
        assert aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive
    clock = SiteClock(zone)
    assert clock.day_start(ts) == expected_start
    assert clock.label(expected_start) == expected_label
    assert clock.day_start(expected_start) == expected_start
    assert clock.day_start(expected_start - 1) < expected_start   # the instant before is the previous day
    assert clock.day_end(expected_start - 1) == expected_start
    assert clock.day_end(ts) - clock.day_start(ts) == hours * H


def test_day_start_where_midnight_repeats_or_the_last_hour_repeats():
    havana = SiteClock("America/Havana")                    # 2026-11-01 01:00 -04 -> 00:00 -05
    second_midnight = local("America/Havana", 2026, 11, 1, 0, 30, fold=1)
    assert havana.day_start(second_midnight) == utc(2026, 11, 1, 4)   # the first 00:00
    assert havana.day_end(second_midnight) - havana.day_start(second_midnight) == 25 * H
    santiago = SiteClock("America/Santiago")                # 2026-04-05 00:00 -03 -> 2026-04-04 23:00 -04
    repeated = local("America/Santiago", 2026, 4, 4, 23, 30, fold=1)
    assert repeated == utc(2026, 4, 5, 3, 30)
    assert santiago.day_start(repeated) == utc(2026, 4, 4, 3)
    assert santiago.day_end(repeated) == utc(2026, 4, 5, 4)
    assert santiago.label(santiago.day_end(repeated)) == "2026-04-05T00:00:00-04:00"


def test_reset_hour():
    clock = SiteClock("Europe/Berlin")
    before = local("Europe/Berlin", 2026, 6, 10, 5, 59, 59) + 999
    at = local("Europe/Berlin", 2026, 6, 10, 6, 0)
    assert clock.day_start(before, reset_hour=6) == local("Europe/Berlin", 2026, 6, 9, 6)
    assert clock.day_start(at, reset_hour=6) == at
    assert clock.day_end(before, reset_hour=6) == at
    assert clock.day_start(before) == local("Europe/Berlin", 2026, 6, 10)       # midnight by default
    per_queue = SiteClock("Europe/Berlin", day_reset_hour=6)
    assert per_queue.day_start(before) == local("Europe/Berlin", 2026, 6, 9, 6)
    assert per_queue.day_start(before, reset_hour=0) == local("Europe/Berlin", 2026, 6, 10)
    # A reset hour inside the skipped hour: the first existing instant after it (03:00 CEST).
    assert clock.day_start(utc(2026, 3, 29, 12), reset_hour=2) == utc(2026, 3, 29, 1)
    assert clock.day_start(utc(2026, 3, 29, 0, 59), reset_hour=2) == local("Europe/Berlin", 2026, 3, 28, 2)
    # A reset hour inside the repeated hour: its first occurrence (02:00 CEST).
    assert clock.day_start(local("Europe/Berlin", 2026, 10, 25, 2, 30, fold=1), reset_hour=2) == \
        utc(2026, 10, 25, 0)


# -- sub-buckets and rolling windows ----------------------------------------------------------------

def test_sub_buckets_are_absolute():
    ts = utc(2026, 6, 10, 9, 0, 7) + 500
    for zone in ("UTC", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York"):
        clock = SiteClock(zone)
        assert clock.sub_bucket(ts) == utc(2026, 6, 10, 9, 0, 0)
        assert clock.sub_bucket(utc(2026, 6, 10, 9, 0, 10)) == utc(2026, 6, 10, 9, 0, 10)
        assert clock.sub_bucket(utc(2026, 6, 10, 9, 0, 10) - 1) == utc(2026, 6, 10, 9, 0, 0)
    assert SiteClock("UTC").sub_bucket(-1) == -10_000
    assert SiteClock("UTC", sub_bucket_seconds=5).sub_bucket(ts) == utc(2026, 6, 10, 9, 0, 5)


@pytest.mark.parametrize(("window", "count"), [(5, 30), (15, 90), (60, 360)])
@pytest.mark.parametrize("offset_ms", [0, 1, 5_000, 9_999])
def test_rolling_window_buckets(window, count, offset_ms):
    clock = SiteClock("Europe/Berlin")
    now = utc(2026, 6, 10, 12, 0) + offset_ms
    buckets = clock.rolling_window_buckets(now, window)
    assert len(buckets) == count
    assert buckets.step == 10_000
    assert buckets[-1] == utc(2026, 6, 10, 12, 0)                  # the current, partial bucket
    assert buckets[0] == utc(2026, 6, 10, 12, 0) + 10_000 - window * M
    assert clock.buckets_per_window(window) == count
    # The documented predicate: start >= (now rounded up to its bucket end) - window, start <= now.
    bucket_end = clock.sub_bucket(now) + 10_000
    candidates = range(buckets[0] - 50_000, buckets[-1] + 50_000, 10_000)
    assert [b for b in candidates if bucket_end - window * M <= b <= now] == list(buckets)


def test_rolling_windows_ignore_dst():
    clock = SiteClock("Europe/Berlin")
    change = utc(2026, 10, 25, 1, 0)
    buckets = clock.rolling_window_buckets(change + 5 * M, 60)
    assert len(buckets) == 360
    assert buckets[0] == change + 5 * M + 10_000 - H


# -- retention ------------------------------------------------------------------------------------

def test_too_late_around_midnight():
    clock = SiteClock("Europe/Berlin")
    just_after = local("Europe/Berlin", 2026, 6, 10, 0, 0, 30)
    cutoff = local("Europe/Berlin", 2026, 6, 9)
    assert clock.retained_since(just_after) == cutoff
    assert clock.is_too_late(cutoff - 1, just_after)
    assert not clock.is_too_late(cutoff, just_after)
    just_before = local("Europe/Berlin", 2026, 6, 10) - 1
    assert clock.retained_since(just_before) == local("Europe/Berlin", 2026, 6, 8)
    assert not clock.is_too_late(cutoff - 1, just_before)          # crossing midnight moves the cut-off
    assert not clock.is_too_late(0, None)                          # nothing seen yet
    # The previous interval (yesterday 23:45) is always inside retention.
    assert clock.previous_interval_start(just_after) >= clock.retained_since(just_after)
    # Retention follows the reset hour: at 05:00 with reset 06:00, "today" began yesterday 06:00.
    early = local("Europe/Berlin", 2026, 6, 10, 5)
    assert clock.retained_since(early, reset_hour=6) == local("Europe/Berlin", 2026, 6, 8, 6)
    assert clock.is_too_late(local("Europe/Berlin", 2026, 6, 8, 5, 59), early, reset_hour=6)
    # On the 25-hour day the previous day is 25 hours long.
    after_fall = local("Europe/Berlin", 2026, 10, 26, 0, 1)
    assert clock.retained_since(after_fall) == utc(2026, 10, 24, 22)


# -- watermark ------------------------------------------------------------------------------------

def test_watermark():
    wm = Watermark()
    assert wm.value is None
    assert wm.advance(1_000)
    assert not wm.advance(1_000)
    assert not wm.advance(500)
    assert wm.value == 1_000
    assert wm.advance(2_000, key=0)
    assert wm.advance(1_500, key=1)                 # partition 1 moved, the overall value did not
    assert wm.value == 2_000
    assert (wm.get(0), wm.get(1), wm.get(2)) == (2_000, 1_500, None)
    assert not wm.advance(1_200, key=1)
    assert sorted(wm.keys()) == [0, 1]
    assert Watermark(5_000).value == 5_000


# -- properties -----------------------------------------------------------------------------------

PROPERTY_ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Adelaide",
                  "Asia/Kathmandu", "America/Santiago", "America/Havana", "Asia/Beirut"]
TRANSITIONS = [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1), utc(2026, 3, 8, 7), utc(2026, 11, 1, 6),
               utc(2026, 4, 4, 16, 30), utc(2026, 10, 3, 16, 30), utc(2026, 9, 6, 4), utc(2026, 4, 5, 3),
               utc(2026, 3, 8, 5), utc(2026, 11, 1, 5), utc(2026, 3, 28, 22), utc(2026, 10, 24, 21)]


def _sample(rng: random.Random, n: int) -> list[int]:
    lo, hi = utc(2000, 1, 1), utc(2037, 12, 31)
    out = [rng.randrange(lo, hi) for _ in range(n)]
    out += [rng.choice(TRANSITIONS) + rng.randrange(-3 * H, 3 * H) for _ in range(n)]
    out += [t + d for t in TRANSITIONS for d in (-1, 0, 1)]
    return out


@pytest.mark.parametrize("minutes", [15, 30, 60])
@pytest.mark.parametrize("zone", PROPERTY_ZONES)
def test_intervals_tile_time_and_align(zone, minutes):
    rng = random.Random(f"{zone}/{minutes}")
    clock = SiteClock(zone, minutes)
    length = minutes * M
    for ts in _sample(rng, 150):
        start, end = clock.interval(ts)
        assert start <= ts < end, (zone, ts)
        assert 0 < end - start <= length
        wall = clock.local(start)
        assert ((wall.hour * 60 + wall.minute) * 60 + wall.second) * 1000 % length == 0, clock.label(start)
        assert wall.microsecond == 0
        # Tiling: the next interval starts exactly at this end, the previous one ends exactly at start.
        assert clock.interval_start(end) == end
        assert clock.interval_end(start - 1) == start
        assert clock.interval(start) == (start, end)
        assert clock.interval(end - 1) == (start, end)
        assert clock.previous_interval_start(ts) == clock.interval_start(start - 1)
        # Days: start <= ts < end, 22..26 hours, and consecutive.
        day_start, day_end = clock.day_start(ts), clock.day_end(ts)
        assert day_start <= ts < day_end
        assert 22 * H <= day_end - day_start <= 26 * H
        assert clock.day_start(day_end) == day_end
        assert clock.day_start(day_start) == day_start
        assert clock.day_start(day_start - 1) == clock.previous_day_start(ts)
        assert not start < day_start < end                  # no interval straddles a day boundary


@pytest.mark.parametrize(("zone", "year", "count"), [
    ("Europe/Berlin", 2026, 8760),
    ("America/New_York", 2026, 8760),
    ("America/Santiago", 2026, 8760),
    # Two half-hour shifts, each splitting one hour into two 30-minute intervals.
    ("Australia/Lord_Howe", 2026, 8761),
    # Changes at 00:01 local: each splits one hour into a 1-minute and a 59-minute interval.
    ("America/St_Johns", 2010, 8762),
])
def test_consecutive_intervals_cover_a_year(zone, year, count):
    """Walk one year interval by interval: contiguous, never longer than the interval length."""
    clock = SiteClock(zone, 60)
    first, last = local(zone, year, 1, 1), local(zone, year + 1, 1, 1)
    starts = list(clock.intervals_between(first, last))
    assert starts[0] == first and clock.interval_end(starts[-1]) == last
    for a, b in zip(starts, starts[1:]):
        assert clock.interval_end(a) == b
        assert clock.interval_start(b - 1) == a
        assert 0 < b - a <= H
    assert len(starts) == count


def test_offset_change_at_unaligned_local_time():
    """America/St_Johns (UTC-3:30) changed at 00:01 local until 2011; the fall change jumps back across
    midnight, to 23:01 of the previous date, after the new day has begun."""
    clock = SiteClock("America/St_Johns", 15)
    fall = utc(2010, 11, 7, 2, 31)                          # 00:01 -02:30 -> 2010-11-06 23:01 -03:30
    assert clock.interval(fall - 1) == (fall - M, fall)     # cut short by the change (interval_end)
    assert clock.label(fall - M) == "2010-11-07T00:00:00-02:30"
    assert clock.interval(fall) == (fall, fall + 14 * M)    # starts at the change (interval_start)
    assert clock.label(fall) == "2010-11-06T23:01:00-03:30"
    assert clock.previous_interval_start(fall) == fall - M
    # 23:10 -03:30 on the 6th, but the 7th began at 00:00 -02:30, before it: the day does not go back.
    late_evening = fall + 9 * M
    assert clock.day_start(late_evening) == utc(2010, 11, 7, 2, 30)
    assert clock.day_end(late_evening) == utc(2010, 11, 8, 3, 30)
    spring = utc(2010, 3, 14, 3, 31)                        # 00:01 -03:30 -> 01:01 -02:30
    assert clock.interval(spring - 1) == (spring - M, spring)
    assert clock.interval(spring) == (spring, spring + 14 * M)
    assert clock.label(spring) == "2010-03-14T01:01:00-02:30"
    assert clock.day_start(spring) == utc(2010, 3, 14, 3, 30)
    assert clock.day_end(spring) - clock.day_start(spring) == 23 * H
