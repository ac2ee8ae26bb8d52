"""A memo of recent results, bounded by the characters it holds."""

from __future__ import annotations

import weakref
from typing import Any

_ALL: "weakref.WeakSet[RecentMemo]" = weakref.WeakSet()


class RecentMemo:
    """Results for recently seen inputs (model replies, grids), bounded by size.

    Work that a run repeats word for word (a model's favourite program, the same task
    grids in every prompt) then costs a dict lookup. The bound is in characters, not
    entries, so a run of huge inputs cannot grow it without limit; when full it starts
    afresh (recent repeats refill it at once).
    """

    def __init__(self, max_chars: int):
        self.max_chars = max_chars
        self._items: dict[Any, Any] = {}
        self._chars = 0
        _ALL.add(self)

    def get(self, key: Any) -> Any:
        return self._items.get(key)

    def put(self, key: Any, value: Any, chars: int) -> None:
        if chars > self.max_chars // 8:
            return  # one input this large would crowd out everything else
        if self._chars + chars > self.max_chars:
            self.clear()
        self._items[key] = value
        self._chars += chars

    def clear(self) -> None:
        self._items.clear()
        self._chars = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def chars(self) -> int:
        return self._chars


def clear_all() -> None:
    """Empty every memo of this process, as a freshly started process has them.

    For measuring: runs repeated in one process would otherwise find the work of the
    earlier ones remembered, which a real run never does.
    """
    for memo in list(_ALL):
        memo.clear()
