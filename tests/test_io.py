"""Files of a run (bonecohort.io): atomic writes, the layout of a run directory, the journal,
part identities and the lock of an output directory."""

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from bonecohort import io

IDENTITY = {"config_sha256": "ab" * 32, "seed": 7, "patients": 12, "chunk_size": 4,
            "dtype": "float64"}


def test_io_is_the_bottom_layer():
    source = Path(io.__file__).read_text()
    assert "import jax" not in source and "from bonecohort" not in source
    assert "import bonecohort" not in source


def test_layout_of_a_run_directory(tmp_path):
    run = io.RunDir(tmp_path / "r")
    assert run.patients == tmp_path / "r" / "patients"
    assert io.RunDir.part_name(1000) == "part-000000001000.parquet"
    assert run.parts_glob == str(tmp_path / "r" / "patients" / "*.parquet")
    assert run.journal().name == "chunks.jsonl" and run.journal(3, 4).name == "chunks-0003.jsonl"
    assert (run.run_json.name, run.study_toml.name, run.manifest.name) == (
        "run.json", "study.toml", "manifest.json")
    assert [run.summary(n).name for n in io.SUMMARIES] == [
        "summary.parquet", "outcomes.parquet", "cumulative.parquet", "tscores.parquet",
        "economics.parquet"]
    out = tmp_path / "runs" / "x"
    assert io.work_dir(out) == tmp_path / "runs" / ".x.partial"
    assert io.lock_path(out) == tmp_path / "runs" / ".x.lock"


def test_atomic_write_keeps_the_old_file_on_failure_and_names_the_target(tmp_path):
    path = tmp_path / "f.txt"
    io.atomic_write(path, "old")

    def fail(fh):
        fh.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        io.atomic_write(path, fail)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    io.atomic_write(path, b"new")
    assert path.read_bytes() == b"new"


def test_parquet_parts_record_the_run_and_corrupt_ones_are_named(tmp_path):
    frame = pl.DataFrame({"patient_id": [1, 2], "x": [0.5, 1.5]})
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for path in (a, b):
        io.write_parquet(path, frame, io.part_metadata(IDENTITY))
    assert a.read_bytes() == b.read_bytes()  # no time or pid in the metadata
    assert io.part_identity(a) == IDENTITY and pl.read_parquet(a).equals(frame)
    io.write_parquet(b, frame)
    assert io.part_identity(b) is None
    b.write_bytes(a.read_bytes()[:-20])
    with pytest.raises(io.CorruptFile) as info:
        io.part_identity(b)
    assert info.value.filename == str(b) and isinstance(info.value, OSError)


def test_journal_skips_missing_parts_and_stops_at_a_cut_line(tmp_path):
    parts = tmp_path / "patients"
    parts.mkdir()
    (parts / "p0").write_text("")
    (parts / "p2").write_text("")
    path = tmp_path / "chunks.jsonl"
    entries = [{"start": i, "kept": 1, "part": f"p{i}", "simulated": 1} for i in range(3)]
    with io.Journal(path, entries[:2]) as journal:
        journal.append(entries[2])
        journal.flush()
        journal._fh.write('{"start": 3, "ke')  # a line cut by a kill
    assert io.read_journal(path, parts) == [entries[0], entries[2]]  # p1 is missing
    assert io.read_journal(tmp_path / "none.jsonl", parts) == []
    with io.Journal(path, [entries[0]]):
        pass
    assert io.read_journal(path, parts) == [entries[0]]


def test_create_exclusive_creates_once(tmp_path):
    path = tmp_path / "run.json"
    assert io.create_exclusive(path, json.dumps({"a": 1}))
    assert not io.create_exclusive(path, json.dumps({"a": 2}))
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_lock_excludes_other_holders_and_records_the_pid(tmp_path):
    out = tmp_path / "out"
    with io.run_lock(out):
        assert io.lock_path(out).read_text() == f"{os.getpid()}\n"
        for shared in (False, True):
            with pytest.raises(io.Locked) as info:
                with io.run_lock(out, shared=shared):
                    pass
            assert info.value.pid == os.getpid()
    with io.run_lock(out, shared=True), io.run_lock(out, shared=True):
        with pytest.raises(io.Locked):
            with io.run_lock(out):
                pass
    with io.run_lock(out):  # released
        pass
    assert io.lock_path(out).exists()  # never deleted


def test_lock_of_a_killed_process_is_released(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from bonecohort.io import run_lock\n"
         "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
         str(out)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(io.Locked) as info:
        with io.run_lock(out):
            pass
    assert info.value.pid == holder.pid
    holder.kill()
    holder.wait()
    deadline = time.time() + 10
    while True:
        try:
            with io.run_lock(out):
                break
        except io.Locked:
            assert time.time() < deadline
            time.sleep(0.05)
