"""Files of a run (the bottom layer: no JAX, nothing else of the package): atomic writes, the
layout of a run directory, the chunk journal, part identities, the lock of an output
directory and the output rules of a run (``output_dir``).

Every file the package writes for a run goes through ``atomic_write``: the bytes are written
to a temporary file beside the target and renamed over it only once complete (``os.replace``
is atomic on POSIX file systems), so a reader never sees half a file and a failure leaves the
previous version, or nothing. A failed write raises ``OSError`` (disk full, permission) naming
the target, never a library's own error type: parquet is serialized in memory first
(``write_parquet``).

``RunDir`` names the files of a run directory; ``work_dir`` and ``lock_path`` the two entries
beside an output directory OUT: ``.OUT.partial`` (an unfinished run) and ``.OUT.lock``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from contextlib import ExitStack, contextmanager
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

SUMMARIES = ("summary", "outcomes", "cumulative", "tscores", "economics")  # of a run


class RunDir:
    """The files of a run directory (a finished OUT, the work directory of an unfinished run,
    or the shared OUT of a distributed run)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    @property
    def patients(self) -> Path:  # folder of the per-patient parquet parts, one per chunk
        return self.root / "patients"

    @property
    def parts_glob(self) -> str:  # glob of the parts (``pl.scan_parquet`` reads them as one table)
        return str(self.patients / "*.parquet")

    def parts(self) -> list[Path]:
        return sorted(self.patients.glob("*.parquet"))

    @staticmethod
    def part_name(start: int) -> str:  # name of the part whose first patient id is ``start``
        return f"part-{start:012d}.parquet"

    def journal(self, process: int = 0, processes: int = 1) -> Path:  # one per process
        return self.root / ("chunks.jsonl" if processes == 1 else f"chunks-{process:04d}.jsonl")

    def journals(self) -> list[Path]:  # journals of the processes of a distributed run
        return sorted(self.root.glob("chunks-*.jsonl"))

    @property
    def run_json(self) -> Path:  # identity of an unfinished or distributed run
        return self.root / "run.json"

    @property
    def study_toml(self) -> Path:  # config of a distributed run (``summarize`` reads it)
        return self.root / "study.toml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    def summary(self, name: str) -> Path:  # one of the ``SUMMARIES`` tables
        return self.root / f"{name}.parquet"


def work_dir(out: Path) -> Path:
    """Where an unfinished run lives until it is complete: ``.OUT.partial`` beside ``out``."""
    return out.parent / f".{out.name}.partial"


def lock_path(out: Path) -> Path:
    """The lock file of ``out``: ``.OUT.lock`` beside it (``run_lock``)."""
    return out.parent / f".{out.name}.lock"


def publish(work: Path, out: Path):
    """Drop the bookkeeping of the finished work directory (journal, run.json) and move it
    to ``out`` atomically (replacing ``out`` if present)."""
    for path in (RunDir(work).journal(), RunDir(work).run_json):
        path.unlink(missing_ok=True)
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)


def failure_message(exc: OSError, kept: Path, rerun: str) -> str:
    """One paragraph for a file that could not be written or read: the file, the cause, where
    the unfinished run is ``kept`` and how to continue once fixed (``rerun``)."""
    path = exc.filename or kept
    if isinstance(exc, CorruptFile):
        return (f"{path}: cannot be read ({exc.strerror}). Delete this file and {rerun}: its "
                "chunk is simulated again.")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        cause, fix = "no space left on the device", "free space on that file system"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        cause, fix = f"cannot be written ({exc.strerror})", "make it writable again"
    else:
        cause, fix = exc.strerror or str(exc), "fix the cause"
    return (f"{path}: {cause}. The unfinished run is kept in {kept}: {fix} and {rerun}, or "
            "start again with another --out.")


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
    except pl.exceptions.PolarsError as exc:  # ComputeError: not a parquet file
        raise CorruptFile(errno.EIO, f"not a readable parquet file ({exc})", str(path)) \
            from None
    try:
        return json.loads(meta[PART_IDENTITY])
    except (KeyError, ValueError):
        return None


def describe(identity: dict | None) -> str:
    """A run identity in words."""
    i = identity or {}
    return "no run identity recorded" if not i else (
        f"config sha256 {str(i.get('config_sha256'))[:12]}..., seed {i.get('seed')}, "
        f"{i.get('patients')} patients, chunk size {i.get('chunk_size')}, {i.get('dtype')}")


# --- owning an output directory -----------------------------------------------------------------

RERUN = "rerun the same command with --resume (it continues from the last finished chunk)"


class Refused(Exception):
    """An output directory that cannot be used as asked; the message says why (exit 2)."""


class ForeignPart(Refused):
    """A part in a run directory belongs to another run."""


class RunIOError(Exception):
    """A file of a run could not be written or read; the message names it and the fix."""


def check_parts(paths, identity: dict, fix: str):
    """``ForeignPart`` for the first part among ``paths`` that records another run than
    ``identity``; ``CorruptFile`` for one that cannot be read."""
    for path in paths:
        found = part_identity(path)
        if found != identity:
            raise ForeignPart(f"{path}: this part belongs to another run ({describe(found)}), "
                              f"not to this one ({describe(identity)}); {fix}")


@contextmanager
def io_failures(kept: Path, rerun: str):
    """``OSError`` in the body becomes a ``RunIOError`` (``failure_message``)."""
    try:
        yield
    except OSError as exc:
        raise RunIOError(failure_message(exc, kept, rerun)) from None


@contextmanager
def owned(out: Path, shared: bool = False):
    """Hold the lock of ``out`` for the body (``run_lock``); ``Refused`` at once if another
    run holds it or it cannot be created."""
    with ExitStack() as stack:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(run_lock(out, shared))
        except Locked as exc:
            raise Refused(f"another bonecohort run (pid {exc.pid or 'unknown'}) is writing "
                          f"{out}; wait for it or choose another --out (lock file "
                          f"{exc.path}).") from None
        except OSError as exc:
            raise Refused(f"{out}: cannot create the output directory ({exc}).") from None
        yield


def _work_dir_for(out: Path, identity: dict | None, resume: bool) -> Path:
    """The work directory of ``out``: kept from an interrupted run of the same ``identity``
    with ``resume``, else made anew (holding ``run.json`` when ``identity`` is given)."""
    work, run = work_dir(out), RunDir(work_dir(out))
    try:
        if work.exists() and resume:
            try:
                before = json.loads(run.run_json.read_text())
            except (OSError, ValueError):
                before = None
            if before != identity:
                raise Refused(f"{out}: --resume: the interrupted run in {work} was made with "
                              "another config, seed, patient count, chunk size or dtype "
                              f"({before}); run without --resume to start again.")
            return work
        if work.exists():
            shutil.rmtree(work)
        work.mkdir()
        if identity is not None:
            atomic_write(run.run_json, json.dumps(identity))
        return work
    except OSError as exc:
        raise Refused(f"{out}: cannot create the output directory ({exc}).") from None


@contextmanager
def output_dir(out: Path, force: bool, identity: dict | None = None, resume: bool = False,
               rerun: str = RERUN):
    """The output rules of a run (and of ``validate``): refuse an existing ``out`` without
    ``force``, hold its lock, and yield the work directory beside it, renamed to ``out`` when
    the body completes. A ``RunIOError`` (an ``OSError`` in the body) or a ``ForeignPart``
    keeps the work directory; any other error removes it."""
    if out.exists() and not force:
        raise Refused(f"{out}: output directory exists; choose another --out or pass "
                      "--force to replace it.")
    with owned(out):
        work = _work_dir_for(out, identity, resume)
        try:
            with io_failures(work, rerun):
                yield work
                publish(work, out)
        except (RunIOError, ForeignPart):
            raise
        except Exception:
            shutil.rmtree(work, ignore_errors=True)
            raise


def claim_shared(out: Path, identity: dict, config_text: str):
    """Make ``out`` the directory of the distributed run ``identity``: the first process
    creates ``run.json`` (exclusively: of processes starting together, one writes it) and
    ``study.toml``; the others, and reruns, must find the same run in ``run.json``."""
    run = RunDir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if run.manifest.exists() and not run.run_json.exists():
            raise Refused(f"{out}: holds a finished run; choose another --out.")
        if create_exclusive(run.run_json, json.dumps(identity)):
            atomic_write(run.study_toml, config_text)
            return
        before = json.loads(run.run_json.read_text())
    except (OSError, ValueError) as exc:
        raise Refused(f"{out}: cannot use the output directory ({exc}).") from None
    if before != identity:
        raise Refused(f"{out}: holds another run ({before}); choose another --out.")


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
