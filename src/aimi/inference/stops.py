"""Stop sequences matched on text, across token boundaries, and never emitted."""

from __future__ import annotations


class StopMatcher:
    """Feed text as it is generated; get back what is safe to emit now.

    Text that could be the start of a stop sequence is held back until the next piece settles it.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._pending = ""
        self.stopped = False
        self.tail = ""
        """After a stop: the text from the stop sequence on, which was not emitted."""

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self._stops:
            return text
        buf = self._pending + text
        cut = min((i for i in (buf.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._pending = ""
            self.tail = buf[cut:]
            return buf[:cut]
        keep = self._partial_suffix(buf)
        self._pending = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        """At the end of generation: what was held back was not a stop sequence after all."""
        out, self._pending = self._pending, ""
        return "" if self.stopped else out

    def _partial_suffix(self, buf: str) -> int:
        """Length of the longest tail of `buf` that is a proper prefix of some stop sequence."""
        for size in range(min(self._hold, len(buf)), 0, -1):
            tail = buf[-size:]
            if any(s.startswith(tail) for s in self._stops):
                return size
        return 0
