"""RowStore and RowArray: rows by identity on disk, read back exactly, never stale, never all at once."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from rowstores import LAYOUT, SHAPE, age_chunks, chunk_files, row_for, store_rows

from tlcore.data import rows
from tlcore.data.rows import RowArray, RowLayout, RowStore

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def store(tmp_path: Path) -> RowStore:
    return RowStore(tmp_path / "store", LAYOUT)


@pytest.fixture
def three_chunks(store: RowStore, monkeypatch: pytest.MonkeyPatch) -> tuple[RowStore, list[str]]:
    """Ten rows written three to a chunk (four chunk files), numbered 0..9 as ``id0``..``id9``."""
    monkeypatch.setattr(rows, "CHUNK_BYTES", 3 * LAYOUT.row_bytes)
    return store, store_rows(store, range(10))


def expected(numbers) -> np.ndarray:
    return np.stack([row_for(int(n)) for n in numbers]) if len(numbers) else np.zeros((0, *SHAPE), "int32")


# ---- round trip --------------------------------------------------------------------------

def test_rows_come_back_exactly_by_int_slice_fancy_index_take_and_asarray(three_chunks) -> None:
    store, identities = three_chunks
    assert len(chunk_files(store.root)) == 4  # the writer flushed a chunk every three rows
    order = [7, 2, 9, 0, 5, 3, 8, 1, 6, 4]
    array = store.array([identities[n] for n in order])
    assert isinstance(array, RowArray)
    assert array.shape == (10, *SHAPE) and array.dtype == np.int32 and array.ndim == 3 and len(array) == 10
    assert array.nbytes == 10 * LAYOUT.row_bytes

    np.testing.assert_array_equal(array[0], row_for(7))
    np.testing.assert_array_equal(array[np.int64(3)], row_for(0))
    np.testing.assert_array_equal(array[-1], row_for(4))
    np.testing.assert_array_equal(array[2:6], expected(order[2:6]))
    np.testing.assert_array_equal(array[::3], expected(order[::3]))
    np.testing.assert_array_equal(array[8:1:-2], expected(order[8:1:-2]))
    np.testing.assert_array_equal(array[[4, 4, 0, 9]], expected([order[i] for i in (4, 4, 0, 9)]))
    np.testing.assert_array_equal(array[np.array([9, 1])], expected([order[9], order[1]]))
    np.testing.assert_array_equal(array[[]], expected([]))
    np.testing.assert_array_equal(np.asarray(array), expected(order))
    as_float = np.asarray(array, dtype=np.float32)
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, expected(order).astype(np.float32))

    taken = array.take([5, 0, 5])
    assert isinstance(taken, RowArray) and taken.shape == (3, *SHAPE)
    np.testing.assert_array_equal(np.asarray(taken), expected([order[5], order[0], order[5]]))
    np.testing.assert_array_equal(taken.take([2, 1])[1], row_for(order[0]))


def test_a_boolean_mask_selects_like_numpy_or_is_refused_never_misread(three_chunks) -> None:
    """``array[labels == k]`` is how NumPy code picks a class's rows; read as indices 0 and 1 it
    would silently return the first two rows over and over."""
    store, identities = three_chunks
    array = store.array(identities)
    mask = np.zeros(10, dtype=bool)
    mask[[3, 7, 8]] = True
    try:
        selected = array[mask]
    except (IndexError, TypeError, ValueError):
        return
    np.testing.assert_array_equal(selected, expected([3, 7, 8]))


def test_a_row_is_read_back_with_its_own_layout(tmp_path: Path) -> None:
    layout = RowLayout((4, 4, 3), "uint8")
    store = RowStore(tmp_path / "pixels", layout)
    pixels = np.random.default_rng(3).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    with store.writer() as writer:
        for i, image in enumerate(pixels):
            writer.add(f"img{i}", image)
    array = store.array([f"img{i}" for i in range(5)])
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(array), pixels)


def test_an_empty_array_reads_as_an_empty_array(store: RowStore) -> None:
    array = store.array([])
    assert len(array) == 0 and array.shape == (0, *SHAPE)
    assert np.asarray(array).shape == (0, *SHAPE)


def test_missing_and_bad_say_what_the_store_does_not_hold(store: RowStore) -> None:
    store_rows(store, [1, 2])
    store.mark_bad([("broken", "It is not an image."), ("empty", "The file is empty.")])
    asked = ["id3", "id1", "broken", "id3", "new", "id2", "empty"]
    assert store.missing(asked) == ["id3", "new"]  # in order, once each; known failures excluded
    assert store.bad(asked) == {"broken": "It is not an image.", "empty": "The file is empty."}
    assert store.bad(["id1"]) == {}
    assert store.locate(["id2", "nope"]).keys() == {"id2"}
    with pytest.raises(KeyError):
        store.array(["id1", "broken"])  # a remembered failure has no row
    with pytest.raises(KeyError):
        store.array(["new"])


def test_the_store_holds_more_identities_than_one_sqlite_query_binds(store: RowStore) -> None:
    identities = store_rows(store, range(2000))
    assert store.missing(identities) == []
    np.testing.assert_array_equal(np.asarray(store.array(identities[::-1]))[[0, 1999]],
                                  expected([1999, 0]))


def test_rows_survive_reopening_the_store(store: RowStore) -> None:
    identities = store_rows(store, [4, 5])
    again = RowStore(store.root, LAYOUT)
    assert again.missing(identities) == []
    np.testing.assert_array_equal(np.asarray(again.array(identities)), expected([4, 5]))


def test_rows_added_before_an_error_are_still_stored(store: RowStore) -> None:
    with pytest.raises(RuntimeError), store.writer() as writer:
        writer.add("kept", row_for(8))
        raise RuntimeError("decoding the next image failed")
    np.testing.assert_array_equal(store.array(["kept"])[0], row_for(8))


def test_full_chunks_are_written_while_the_next_fills_and_flush_waits_for_them(
    store: RowStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rows, "CHUNK_BYTES", 3 * LAYOUT.row_bytes)
    started, release = threading.Event(), threading.Event()
    store_chunk = store._store_chunk

    def slow_store_chunk(identities, chunk_rows):
        started.set()
        assert release.wait(10)
        store_chunk(identities, chunk_rows)

    monkeypatch.setattr(store, "_store_chunk", slow_store_chunk)
    writer = rows.RowWriter(store)
    for n in range(3):
        writer.add(f"id{n}", row_for(n))
    assert started.wait(10), "the first full chunk went to the writing thread"
    writer.add("id3", row_for(3))  # filling the next buffer does not wait for the write
    assert store.missing(["id0"]) == ["id0"]
    release.set()
    writer.close()
    np.testing.assert_array_equal(np.asarray(store.array([f"id{n}" for n in range(4)])), expected(range(4)))


def test_two_buffers_take_turns_and_one_is_refilled_only_once_its_chunk_is_stored(
    store: RowStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rows, "CHUNK_BYTES", 3 * LAYOUT.row_bytes)
    store_chunk, buffers = store._store_chunk, set()

    def slow_store_chunk(identities, chunk_rows):
        buffers.add(id(chunk_rows.base))
        time.sleep(0.05)  # a refill that did not wait would overwrite these rows meanwhile
        store_chunk(identities, chunk_rows)

    monkeypatch.setattr(store, "_store_chunk", slow_store_chunk)
    with store.writer() as writer:
        for n in range(14):
            writer.add(f"id{n}", row_for(n))
    assert len(buffers) == 2
    np.testing.assert_array_equal(np.asarray(store.array([f"id{n}" for n in range(14)])), expected(range(14)))


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="the kernel offers no page-cache advice here")
@pytest.mark.parametrize("cache_writes", [True, False])
def test_a_store_written_through_drops_its_chunks_from_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_writes: bool
) -> None:
    monkeypatch.setattr(rows, "CHUNK_BYTES", 3 * LAYOUT.row_bytes)
    advice, advise = [], os.posix_fadvise
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, *args: advice.append(args) or advise(fd, *args))
    store = RowStore(tmp_path / "store", LAYOUT, cache_writes=cache_writes)
    identities = store_rows(store, range(7))
    np.testing.assert_array_equal(np.asarray(store.array(identities)), expected(range(7)))
    assert advice == ([] if cache_writes else [(0, 0, os.POSIX_FADV_DONTNEED)] * 3)


def test_a_failed_chunk_write_surfaces_at_the_next_hand_over(store: RowStore, monkeypatch) -> None:
    monkeypatch.setattr(rows, "CHUNK_BYTES", LAYOUT.row_bytes)

    def full_disk(identities, chunk_rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_store_chunk", full_disk)
    with pytest.raises(OSError, match="No space"), store.writer() as writer:
        for n in range(3):
            writer.add(f"id{n}", row_for(n))


# ---- never stale -------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["garbage", "truncated", "emptied"])
def test_a_damaged_index_empties_the_store(store: RowStore, damage: str) -> None:
    store_rows(store, range(50))
    index = store.root / "index.sqlite"
    data = index.read_bytes()
    index.write_bytes({"garbage": b"this is not a database" * 200,
                       "truncated": data[: len(data) // 2],
                       "emptied": b"\0" * len(data)}[damage])
    reopened = RowStore(store.root, LAYOUT)
    assert reopened.missing(["id0", "id49"]) == ["id0", "id49"]
    assert chunk_files(store.root) == []  # rows without an index are deleted, not kept around
    store_rows(reopened, [7], prefix="fresh")
    np.testing.assert_array_equal(reopened.array(["fresh7"])[0], row_for(7))


def test_a_new_layout_empties_the_store_instead_of_reinterpreting_rows(store: RowStore) -> None:
    store_rows(store, [1, 2])
    for layout in (RowLayout((3, 2), "int32"), RowLayout(SHAPE, "float32"), RowLayout((6,), "int32")):
        other = RowStore(store.root, layout)
        assert other.missing(["id1", "id2"]) == ["id1", "id2"], layout
        assert chunk_files(store.root) == []
        store_rows(other, [3])
        np.testing.assert_array_equal(other.array(["id3"])[0], row_for(3, layout.shape, layout.dtype))


def test_a_lost_layout_file_empties_the_store(store: RowStore) -> None:
    store_rows(store, [1])
    (store.root / "layout.json").unlink()
    assert RowStore(store.root, LAYOUT).missing(["id1"]) == ["id1"]


def test_a_chunk_cut_short_on_disk_raises_oserror_not_garbage(three_chunks) -> None:
    store, identities = three_chunks
    opened_before = store.array(identities)
    last = store.locate(["id9"])["id9"]
    victim = next(path for path in chunk_files(store.root) if os.path.getsize(path) == LAYOUT.row_bytes)
    assert last[1] == 0  # id9 is alone in the last chunk, the one of a single row
    os.truncate(victim, LAYOUT.row_bytes // 2)
    opened_after = store.array(identities)
    for array in (opened_before, opened_after):
        np.testing.assert_array_equal(array[:9], expected(range(9)))  # other chunks still read
        with pytest.raises(OSError, match="shorter"):
            array[9]
        with pytest.raises(OSError):
            np.asarray(array)


# ---- eviction ----------------------------------------------------------------------------

def test_eviction_removes_least_recently_used_chunks_first(store: RowStore) -> None:
    old, middle, recent = (store_rows(store, range(k * 10, k * 10 + 10)) for k in range(3))
    age_chunks(store.root, 100)
    store.array(old)  # reading marks a chunk as used: 'middle' is now the least recently used
    chunk = store.size_bytes() // 3
    deleted = store.evict(max_bytes=2 * chunk, keep_since=time.time() + 10)
    assert deleted == 1
    assert store.missing(old + middle + recent) == middle
    assert store.size_bytes() <= 2 * chunk
    np.testing.assert_array_equal(np.asarray(store.array(old)), expected(range(10)))


def test_eviction_spares_chunks_used_since_keep_since_even_over_the_cap(store: RowStore) -> None:
    first, second, in_use = (store_rows(store, range(5), prefix=name) for name in ("a", "b", "in_use"))
    age_chunks(store.root, 100)
    run_started = time.time()
    store.array(in_use)  # the run now in progress reads it
    assert store.evict(max_bytes=0, keep_since=run_started) == 2
    assert store.missing(first + second + in_use) == first + second
    np.testing.assert_array_equal(np.asarray(store.array(in_use)), expected(range(5)))


def test_an_array_opened_before_eviction_still_reads_its_rows(store: RowStore) -> None:
    identities = store_rows(store, range(6))
    array = store.array(identities)
    age_chunks(store.root, 100)
    assert store.evict(max_bytes=0, keep_since=time.time()) == 1
    assert chunk_files(store.root) == []
    np.testing.assert_array_equal(np.asarray(array), expected(range(6)))


def test_nothing_is_evicted_under_the_cap(store: RowStore) -> None:
    identities = store_rows(store, range(6))
    age_chunks(store.root, 100)
    assert store.evict(max_bytes=store.size_bytes(), keep_since=time.time()) == 0
    assert store.missing(identities) == []


# ---- several writers ---------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    sys.path.insert(0, sys.argv[4])
    from rowstores import LAYOUT, row_for
    from tlcore.data.rows import RowStore

    root, number, start = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    time.sleep(max(0.0, start - time.time()))
    store = RowStore(root, LAYOUT)
    identities = [f"shared{i}" for i in range(100)] + [f"own{number}-{i}" for i in range(100)]
    for round in range(4):
        with store.writer() as writer:
            for identity in identities[round::4]:
                writer.add(identity, row_for(number))
    rows = np.asarray(store.array(identities))
    assert all(np.array_equal(row, row_for(1)) or np.array_equal(row, row_for(2)) for row in rows[:100])
    assert (rows[100:] == row_for(number)).all()
    print("ok")
""")


def run_two_writers(root: Path) -> None:
    """Two processes that store 100 shared and 100 own identities each at the same moment."""
    start = time.time() + 1.5  # both have imported numpy and tlcore by then
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    support = str(REPO / "tests" / "support")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(n), str(start), support],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n in (1, 2)]
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0 and out.strip() == "ok", err
    store = RowStore(root, LAYOUT)
    shared = np.asarray(store.array([f"shared{i}" for i in range(100)]))
    for row in shared:  # one whole row wins, never a mix of the two
        assert np.array_equal(row, row_for(1)) or np.array_equal(row, row_for(2))
    for n in (1, 2):
        assert store.missing([f"own{n}-{i}" for i in range(100)]) == []


def test_two_writers_storing_the_same_identities_both_succeed(store: RowStore) -> None:
    run_two_writers(store.root)


def test_two_writers_creating_a_new_store_at_once_both_succeed(tmp_path: Path) -> None:
    for attempt in range(3):
        run_two_writers(tmp_path / f"fresh{attempt}")


# ---- memory ------------------------------------------------------------------------------

def rss() -> int:
    return psutil.Process().memory_info().rss


def test_reading_200_mb_of_rows_in_batches_keeps_resident_memory_flat(tmp_path: Path) -> None:
    layout = RowLayout((256, 256, 3), "uint8")
    count = 1024  # 201 MB
    store = RowStore(tmp_path / "big", layout)
    with store.writer() as writer:
        for i in range(count):
            writer.add(f"big{i}", np.full(layout.shape, i % 251, np.uint8))
    array = store.array([f"big{i}" for i in range(count)])
    assert array.nbytes > 200e6
    gc.collect()
    before, peak = rss(), 0
    started = time.perf_counter()
    for start in range(0, count, 32):
        batch = array[start:start + 32]
        assert (batch[:, 0, 0, 0] == np.arange(start, start + len(batch)) % 251).all()
        assert (batch[:, -1, -1, -1] == batch[:, 0, 0, 0]).all()
        peak = max(peak, rss())
        del batch
    seconds = time.perf_counter() - started
    after = rss()
    assert peak - before < 50e6, f"resident memory grew by {(peak - before) / 1e6:.0f} MB while reading"
    assert after - before < 50e6, f"resident memory grew by {(after - before) / 1e6:.0f} MB"
    assert seconds < 10, f"reading 200 MB took {seconds:.1f} s"
