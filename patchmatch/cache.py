"""Least-recently-used caches of per-image data (patches, features) under a byte budget."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

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


class LruMapping(Mapping):
    """A read-only mapping over fixed ``keys`` whose values are loaded on demand by
    ``loader(key)`` and kept, least recently used evicted, while their ``size(value)`` bytes
    stay under ``budget_bytes`` (the ``keep`` most recent are always kept): per-image data of a
    collection streamed from disk instead of held whole."""

    def __init__(self, keys: Iterable[str], loader: Callable[[str], Any], budget_bytes: int,
                 size: Callable[[Any], int], keep: int = 2):  # fmt: skip
        self._keys = list(dict.fromkeys(keys))
        self._known = set(self._keys)
        self._loader, self._size, self.budget, self.keep = loader, size, budget_bytes, keep
        self.items: OrderedDict[str, Any] = OrderedDict()
        self.bytes = 0
        self.loaded = 0

    def __contains__(self, key) -> bool:
        return key in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, key: str) -> Any:
        if key not in self._known:
            raise KeyError(key)
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = self._loader(key)
        self.loaded += 1
        self.items[key] = value
        self.bytes += self._size(value)
        while self.bytes > self.budget and len(self.items) > self.keep:
            _, old = self.items.popitem(last=False)
            self.bytes -= self._size(old)
        return value
