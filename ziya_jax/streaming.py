"""Overlap producing items with consuming them: a one-thread prefetching iterator."""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Iterate `items` in a background thread, keeping up to `depth` items ready.

    Memory holds at most depth + 1 items (the one being consumed and those ready). An
    exception raised while producing is re-raised in the consumer.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((True, item))
            q.put((True, _DONE))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put((False, e))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.01)


def transpose_2d(x, dtype) -> "np.ndarray":  # noqa: F821
    """x.T as a new C-contiguous array of `dtype`, copied in cache-friendly row blocks."""
    import numpy as np

    out = np.empty((x.shape[1], x.shape[0]), dtype)
    for i in range(0, x.shape[0], 256):
        out[:, i:i + 256] = x[i:i + 256].T
    return out
