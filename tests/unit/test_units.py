"""The one formatter of sizes, rates and durations every front end prints."""

from __future__ import annotations

from appliance.units import clock, human_size, megabytes, rate, speed


def test_sizes_use_the_units_disk_vendors_print() -> None:
    assert human_size(999) == "999 B"
    assert human_size(512_110_190_592) == "512.1 GB"
    assert human_size(10**18) == "1000.0 PB"


def test_durations_and_rates() -> None:
    assert clock(None) == "--:--" and clock(42.9) == "0:42" and clock(3723) == "1:02:03"
    assert rate(3_100_000_000, 42) == "3.1 GB in 0:42 (73.8 MB/s)"
    assert rate(10, 0) == "10 B in 0:00 (0.0 MB/s)"  # a job faster than the clock


def test_progress_figures_keep_their_width() -> None:
    assert speed(5e6, 6) == "   5.0 MB/s" and speed(123.45e6) == "123.5 MB/s"
    assert megabytes(1_234_567_890) == "1,235 MB"
