"""Files of a run (imperative shell, no JAX): atomic writes.

Every file the package writes goes through ``atomic_write``: the bytes are written to a
temporary file beside the target and renamed over it only once complete (``os.replace`` is
atomic on POSIX file systems), so a reader never sees half a file and a failure leaves the
previous version, or nothing.
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path | str, data) -> Path:
    """Write ``data`` (bytes, str, or a callable that writes to a binary file handle) to
    ``path`` atomically. ``OSError`` (disk full, permission) propagates; the temporary file is
    removed."""
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
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
