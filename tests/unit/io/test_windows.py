from appliance.io.windows import WINDOW, Window, window_count, window_length, windows, zero_hash
from appliance.repo.chunk import content_hash
from appliance.repo.repository import WINDOW as FORMAT_WINDOW


def test_one_window_size_the_repository_format_s() -> None:
    assert WINDOW == FORMAT_WINDOW == 4 * 1024 * 1024


def test_no_used_ranges_no_windows() -> None:
    assert list(windows([], 10 * WINDOW)) == []
    assert list(windows([(0, 100)], 0)) == []


def test_last_window_is_short() -> None:
    size = 2 * WINDOW + 1000
    got = list(windows([(0, size)], size))
    assert [(w.number, w.offset, w.length, w.used) for w in got] == [
        (0, 0, WINDOW, ((0, WINDOW),)),
        (1, WINDOW, WINDOW, ((0, WINDOW),)),
        (2, 2 * WINDOW, 1000, ((0, 1000),)),
    ]
    assert window_count(size) == 3
    assert window_length(2, size) == 1000
    assert window_length(3, size) == 0


def test_range_crossing_windows_is_split_and_windows_between_are_skipped() -> None:
    used = [(WINDOW - 512, 1024), (3 * WINDOW + 4096, 4096)]
    got = list(windows(used, 4 * WINDOW, base=1 << 20, region=5))
    assert got == [
        Window(5, 0, 1 << 20, WINDOW, ((WINDOW - 512, 512),)),
        Window(5, 1, (1 << 20) + WINDOW, WINDOW, ((0, 512),)),
        Window(5, 3, (1 << 20) + 3 * WINDOW, WINDOW, ((4096, 4096),)),
    ]
    assert sum(w.used_bytes for w in got) == 1024 + 4096


def test_ranges_past_the_region_end_are_dropped() -> None:
    got = list(windows([(0, 10_000), (20_000, 5)], 6000, window=4096))
    assert [(w.number, w.length, w.used) for w in got] == [
        (0, 4096, ((0, 4096),)),
        (1, 1904, ((0, 1904),)),
    ]


def test_several_ranges_in_one_window_stay_in_order() -> None:
    got = list(windows([(0, 512), (4096, 512), (8192, 8192)], 16384, window=8192))
    assert [w.used for w in got] == [((0, 512), (4096, 512)), ((0, 8192),)]


def test_zero_hash_is_the_hash_of_zeros() -> None:
    assert zero_hash(4096) == content_hash(bytes(4096))
    assert zero_hash(WINDOW) != zero_hash(WINDOW - 512)
