"""One time base for everything a drill records.

Every timestamp is ``time.monotonic()`` relative to the start of the recording
(so wall-clock steps cannot bend a gap); one wall-clock anchor taken at the
same instant converts them back to real time for the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """Monotonic seconds since ``mono0``, with the wall-clock time at that instant."""

    mono0: float
    wall0: float

    @classmethod
    def start(cls) -> Clock:
        return cls(mono0=time.monotonic(), wall0=time.time())

    def now(self) -> float:
        """Seconds since the start, monotonic."""
        return time.monotonic() - self.mono0

    def to_wall(self, t: float) -> float:
        """Epoch seconds of a relative time."""
        return self.wall0 + t

    def from_wall(self, wall: float) -> float:
        """Relative time of an epoch timestamp (e.g. an event written by the playbook)."""
        return wall - self.wall0

    def anchor(self) -> dict[str, float]:
        return {"mono": self.mono0, "wall": self.wall0}
