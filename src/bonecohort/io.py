"""Files of a run (the bottom layer: no JAX, nothing else of the package): atomic writes, the
layout of a run directory, the chunk journal, part identities and the lock of an output
directory.

Every file the package writes for a run goes through ``atomic_write``: the bytes are written
to a temporary file beside the target and renamed over it only once complete (``os.replace``
is atomic on POSIX file systems), so a reader never sees half a file and a failure leaves the
previous version, or nothing. A failed write raises ``OSError`` (disk full, permission) naming
the target, never a library's own error type: parquet is serialized in memory first
(``write_parquet``).

``RunDir`` names every file of a run directory; ``work_dir`` and ``lock_path`` name the two
entries beside an output directory OUT: ``.OUT.partial``, where an unfinished run lives, and
``.OUT.lock``, the lock file (``run_lock``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

PART_IDENTITY = "bonecohort_run"  # parquet key-value metadata: the identity of the run


def atomic_write(path: Path | str, data) -> Path:
    """Write ``data`` (bytes, str, or a callable that writes to a binary file handle) to
    ``path`` atomically. ``OSError`` (disk full, permission) propagates with ``path`` as its
    file name; the temporary file is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            exc.filename = str(path)
        raise
    return path


def write_parquet(path: Path | str, frame, metadata: dict[str, str] | None = None) -> Path:
    """Write the polars ``frame`` to ``path`` atomically, with parquet key-value
    ``metadata``."""
    buf = BytesIO()
    frame.write_parquet(buf, metadata=metadata)
    return atomic_write(path, buf.getvalue())


def create_exclusive(path: Path | str, data) -> bool:
    """Create ``path`` holding ``data`` unless it exists (then return False and leave it).
    Like ``open(..., O_CREAT | O_EXCL)``, of several processes exactly one creates it, and the
    file appears complete: it is written under a temporary name and hard-linked into place
    (``link`` fails if the name exists)."""
    path = Path(path)
    tmp = atomic_write(path.with_name(f".{path.name}.{os.getpid()}.new"), data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


# --- layout ------------------------------------------------------------------------------------

SUMMARIES = ("summary", "outcomes", "cumulative", "tscores")  # summary tables of a run


class RunDir:
    """The files of a run directory (a finished OUT, the work directory of an unfinished run,
    or the shared OUT of a distributed run)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    @property
    def patients(self) -> Path:
        """Folder of the per-patient parquet parts, one per chunk."""
        return self.root / "patients"

    @property
    def parts_glob(self) -> str:
        """Glob of the parts (``pl.scan_parquet`` reads them as one table)."""
        return str(self.patients / "*.parquet")

    def parts(self) -> list[Path]:
        return sorted(self.patients.glob("*.parquet"))

    @staticmethod
    def part_name(start: int) -> str:
        """Name of the part whose first patient id is ``start``."""
        return f"part-{start:012d}.parquet"

    def journal(self, process: int = 0, processes: int = 1) -> Path:
        """Journal of finished chunks (one per process of a distributed run)."""
        return self.root / ("chunks.jsonl" if processes == 1 else f"chunks-{process:04d}.jsonl")

    def journals(self) -> list[Path]:
        """Journals of the processes of a distributed run."""
        return sorted(self.root.glob("chunks-*.jsonl"))

    @property
    def run_json(self) -> Path:
        """Identity of an unfinished or distributed run (``--resume`` checks it)."""
        return self.root / "run.json"

    @property
    def study_toml(self) -> Path:
        """Config of a distributed run (``summarize`` reads it)."""
        return self.root / "study.toml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    def summary(self, name: str) -> Path:
        """One of the ``SUMMARIES`` tables."""
        return self.root / f"{name}.parquet"


def work_dir(out: Path) -> Path:
    """Where an unfinished run lives until it is complete: ``.OUT.partial`` beside ``out``."""
    return out.parent / f".{out.name}.partial"


def lock_path(out: Path) -> Path:
    """The lock file of ``out``: ``.OUT.lock`` beside it (``run_lock``)."""
    return out.parent / f".{out.name}.lock"


# --- journal and part identity -------------------------------------------------------------------


class CorruptFile(OSError):
    """A file of a run that exists but cannot be read; ``filename`` names it."""


def read_journal(path: Path, parts: Path) -> list[dict]:
    """Finished chunks recorded in the journal at ``path`` (one JSON object a line: start,
    kept, part, simulated) whose parts exist in ``parts``. Reading stops at a line cut by a
    kill; a chunk whose part is missing is left out (it is simulated again)."""
    if not path.exists():
        return []
    chunks = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            break
        if entry.get("part") and not (parts / entry["part"]).exists():
            continue
        chunks.append(entry)
    return chunks


class Journal:
    """Append-only journal of finished chunks. Opening rewrites it (atomically) with the
    entries ``kept`` from an interrupted run; ``append`` adds one, ``flush`` makes the lines
    so far durable against a kill of the process. ``OSError`` names the journal."""

    def __init__(self, path: Path, kept=()):
        self.path = path
        atomic_write(path, "".join(json.dumps(c) + "\n" for c in kept))
        self._fh = open(path, "a")

    def append(self, entry: dict):
        self._fh.write(json.dumps(entry) + "\n")

    def flush(self):
        try:
            self._fh.flush()
        except OSError as exc:
            exc.filename = str(self.path)
            raise

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        try:
            self._fh.close()
        except OSError:
            if kind is None:  # else the error already on its way is the one to report
                raise


def part_metadata(identity: dict) -> dict[str, str]:
    """Parquet key-value metadata recording the run a part belongs to (no time or pid, so
    identical runs write identical parts)."""
    return {PART_IDENTITY: json.dumps(identity, sort_keys=True)}


def part_identity(path: Path) -> dict | None:
    """The run identity recorded in the part at ``path`` (None if it records none).
    ``CorruptFile`` if its parquet footer cannot be read."""
    import polars as pl

    try:
        meta = pl.read_parquet_metadata(path)
    except OSError:
        raise
    except Exception as exc:  # polars' ComputeError for a file that is not parquet
        raise CorruptFile(errno.EIO, f"not a readable parquet file ({exc})", str(path)) \
            from None
    try:
        return json.loads(meta[PART_IDENTITY])
    except (KeyError, ValueError):
        return None


# --- lock ----------------------------------------------------------------------------------------


class Locked(Exception):
    """Another process holds the lock of an output directory; ``pid`` is the one it recorded
    (None if unknown)."""

    def __init__(self, path: Path, pid: int | None):
        super().__init__(f"{path}: locked by pid {pid}")
        self.path, self.pid = path, pid


@contextmanager
def run_lock(out: Path, shared: bool = False):
    """Hold the lock of the output directory ``out`` (``fcntl.flock`` on ``lock_path(out)``)
    for the body: exclusive for a run, shared for the processes of one distributed run.
    Raises ``Locked`` at once if another process holds it incompatibly. The holder's pid is
    written into the file for that message. The kernel releases the lock when the process
    ends, however it ends, so a killed run can be resumed; the file is never deleted (a
    process waiting on a deleted file would lock a name nobody else sees)."""
    path = lock_path(out)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise Locked(path, int(text) if text.isdigit() else None) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)
