"""One rule for comparing an engine window with the oracle's: counts exactly, ratios to 1e-9."""

import pytest


def assert_same_ratio(got, want, where) -> None:
    """Both absent (empty denominator), or equal to 1e-9 (relative for large averages)."""
    assert (got is None) == (want is None) and (
        got is None or got == pytest.approx(want, rel=1e-9, abs=1e-9)), (where, got, want)


def assert_same_window(got, want, where, counts, ratios) -> None:
    for name in counts:
        assert getattr(got, name) == getattr(want, name), (where, name)
    for name in ratios:
        assert_same_ratio(getattr(got, name), getattr(want, name), (where, name))
