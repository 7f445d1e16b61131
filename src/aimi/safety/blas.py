"""numpy's BLAS on one thread for the small products of the safety classifiers.

OpenBLAS's thread pool only slows matrices this small, and its threads spin on a core for a while
after each product: measured, the toxicity classifier's forward pass took 0.45 ms per window on
one thread and 3 to 200 ms with the pool on a loaded machine, and the semantic classifier's heads,
a product of a few windows' vectors after each encoding, left the pool spinning on the core the
encoder's second worker needed (a 100-word prompt: p50 21 against 13 ms). The limit is global to
the process, so callers take it one at a time: the lock keeps one caller's exit from undoing
another's limit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import ThreadpoolController


class OneBlasThread:
    """A context in which numpy's BLAS runs on one thread, for one caller at a time. The lock is
    shared by every instance, since the limit is the process's: the toxicity classifier's exit
    must not lift the limit while the semantic classifier's heads run."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        self._controller = ThreadpoolController()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with OneBlasThread._lock, self._controller.limit(limits=1, user_api="blas"):
            yield
