"""The bounded queue between the stream client's socket readers and its consumer.

STYLE: every queue states its overflow policy; this one takes it as a constructor argument, so the
caller states it where the queue is made ("drop_oldest" for market data, "block" for user data).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Literal

from shared.exchange.frames import Gap, StreamMessage

StreamItem = StreamMessage | Gap
OverflowPolicy = Literal["drop_oldest", "block"]


class Inbox:
    """Bounded queue from the socket readers to the consumer.

    Overflow policy, fixed at construction: "drop_oldest" (market data) evicts the oldest queued
    message and counts it in `dropped`; "block" (user data) makes `put` wait for space, which
    stops the reader. A `Gap` is never dropped: it evicts the oldest message instead, or waits.
    """

    def __init__(self, max_items: int, policy: OverflowPolicy) -> None:
        if max_items < 1:
            raise ValueError(f"inbox: max_items={max_items} must be >= 1")
        self.max_items = max_items
        self.policy = policy
        self.dropped = 0  # messages evicted by the drop-oldest policy
        self.is_blocked = False  # a `put` is waiting for space (block policy)
        self._items: deque[StreamItem] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def _evict_oldest_message(self) -> bool:
        for i, item in enumerate(self._items):
            if isinstance(item, StreamMessage):
                del self._items[i]
                self.dropped += 1
                return True
        return False

    async def put(self, item: StreamItem) -> None:
        """Queue `item` under the policy; with "block" waits for space (cancellable)."""
        if self.policy == "block":
            while len(self._items) >= self.max_items:
                self.is_blocked = True
                self._writable.clear()
                try:
                    await self._writable.wait()
                finally:
                    self.is_blocked = False
        elif len(self._items) >= self.max_items and not self._evict_oldest_message():
            if isinstance(item, StreamMessage):  # only gaps queued: drop the newcomer
                self.dropped += 1
                return
        self._items.append(item)
        self._readable.set()

    def get_nowait(self) -> StreamItem | None:
        """Return the oldest item, or None when the queue is empty."""
        if not self._items:
            return None
        item = self._items.popleft()
        self._writable.set()
        return item

    async def get(self) -> StreamItem:
        """Wait for and return the oldest item (cancellable; nothing is lost on cancel)."""
        while not self._items:
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        self._writable.set()
        return item
