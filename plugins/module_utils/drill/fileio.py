"""Files a drill writes."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def write_json(path: str, data: Any, *, indent: int | None = None) -> None:
    """Write JSON atomically (temp file + rename), creating the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.chmod(tmp, 0o644)  # a report, no secret in it
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=indent, sort_keys=indent is not None)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
