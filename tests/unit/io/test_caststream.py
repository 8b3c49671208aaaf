"""The multicast stream's records: read back whole, a damaged header skipped to the next
record, a stream cut short noticed, and chunks taken by name with a bounded look-ahead."""

from __future__ import annotations

import io

from appliance.io.caststream import (
    CHUNK,
    FILE,
    MAGIC,
    ChunkStream,
    RecordReader,
    end_record,
    head_record,
    parse_head,
    record,
)


def name(n: int) -> str:
    return f"{n:064x}"


def stream(chunks: int, *, end: bool = True) -> bytearray:
    data = bytearray(head_record("base", "http://10.0.0.1:8090/"))
    data += record(FILE, "repo.json", b"{}")
    for n in range(chunks):
        data += record(CHUNK, name(n), bytes([n]) * (100 + n))
    if end:
        data += end_record(chunks)
    return data


def test_records_read_back_whole() -> None:
    reader = RecordReader(io.BytesIO(bytes(stream(3))))
    recs = list(reader)
    assert [r.kind for r in recs] == [b"H", b"F", b"C", b"C", b"C", b"E"]
    assert parse_head(recs[0].body) == {
        "version": 1,
        "image": "base",
        "http": "http://10.0.0.1:8090/",
    }
    assert recs[3].key == name(1) and recs[3].body == b"\x01" * 101
    assert reader.complete and reader.skipped == 0


def test_a_damaged_header_is_skipped_to_the_next_record() -> None:
    data = stream(3)
    second = data.find(MAGIC, data.find(name(0).encode()))  # chunk 1's record
    data[second + 1] ^= 0xFF
    reader = RecordReader(io.BytesIO(bytes(data)))
    keys = [r.key for r in reader if r.kind == CHUNK]
    assert keys == [name(0), name(2)]
    assert reader.skipped > 0 and reader.complete


def test_a_stream_cut_short_is_not_complete() -> None:
    data = stream(3, end=False)
    reader = RecordReader(io.BytesIO(bytes(data[:-50])))
    assert [r.key for r in reader if r.kind == CHUNK] == [name(0), name(1)]
    assert not reader.complete and reader.skipped > 0


def test_foreign_heads_are_refused() -> None:
    assert parse_head(b"not json") is None
    assert parse_head(b'{"version": 2, "image": "x", "http": null}') is None
    assert parse_head(b'{"version": 1, "image": 3, "http": null}') is None


def test_chunks_taken_by_name_with_a_bounded_lookahead() -> None:
    chunks = ChunkStream(RecordReader(io.BytesIO(bytes(stream(10)))), lookahead=3)
    head, files = chunks.head()
    assert head is not None and head["image"] == "base"
    assert files == {"repo.json": b"{}"}
    assert chunks.take(name(0)) == b"\x00" * 100
    assert chunks.take(name(0)) == b"\x00" * 100  # read twice (the table check, the write)
    assert chunks.take(name(9)) is None  # not within 3 records: fetched elsewhere
    assert chunks.take(name(2)) == b"\x02" * 102  # read past above, kept
    assert chunks.take(name(5)) == b"\x05" * 105
    chunks.drain()
    assert chunks.ended and chunks.take(name(9)) is None


def test_the_cache_is_bounded() -> None:
    chunks = ChunkStream(RecordReader(io.BytesIO(bytes(stream(10)))), cache_bytes=250)
    chunks.head()
    assert chunks.take(name(4)) == b"\x04" * 104
    assert chunks.take(name(0)) is None  # dropped from the cache, the stream is past it
