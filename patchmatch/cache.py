"""A least-recently-used cache of per-image arrays (patches) under a byte budget."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np


class LruArrayCache:
    """Arrays computed on demand by ``loader(key)``, least recently used evicted past ``budget_bytes``.

    The ``keep`` most recent entries are never evicted (the two images of the current pair).
    """

    def __init__(self, loader: Callable[[str], np.ndarray], budget_bytes: int, keep: int = 2):
        self.loader = loader
        self.budget = budget_bytes
        self.keep = keep
        self.items: OrderedDict[str, np.ndarray] = OrderedDict()
        self.bytes = 0
        self.computed = 0

    def get(self, key: str) -> np.ndarray:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = self.loader(key)
        self.computed += 1
        self.items[key] = value
        self.bytes += value.nbytes
        while self.bytes > self.budget and len(self.items) > self.keep:
            _, old = self.items.popitem(last=False)
            self.bytes -= old.nbytes
        return value
