"""Per-topic sequence tracking for the bus subscriber: gaps, snapshot floors, publisher resets.

The Clone pattern (zguide ch. 5): a subscriber subscribes first, then loads a snapshot
`{topic: seq}` (from Redis), drops every message with seq <= the snapshot's, and resyncs from a
fresh snapshot whenever a gap shows that messages were lost (high-water mark, reconnect).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class SeqKind(enum.Enum):
    FIRST = "first"  # first message seen on the topic, no snapshot: accepted
    NEXT = "next"  # exactly the expected seq: accepted
    GAP = "gap"  # later than expected, `missed` messages lost: accepted, caller resyncs
    STALE = "stale"  # at or below the snapshot floor: dropped
    RESET = "reset"  # below the last live seq: the publisher restarted; accepted, caller resyncs


@dataclass(frozen=True)
class SeqVerdict:
    kind: SeqKind
    missed: int = 0  # messages skipped (GAP only)

    @property
    def is_accepted(self) -> bool:
        return self.kind is not SeqKind.STALE

    @property
    def needs_resync(self) -> bool:
        return self.kind in (SeqKind.GAP, SeqKind.RESET)


class TopicSequences:
    """The last accepted seq per topic, and snapshot floors not yet passed."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._floor: dict[str, int] = {}

    def load_snapshot(self, snapshot: Mapping[str, int]) -> None:
        """Set floors from a snapshot {topic: seq}: later messages at or below them are dropped.

        The snapshot also becomes the expected predecessor, so a message beyond seq + 1 is a gap.
        """
        for topic, seq in snapshot.items():
            self._floor[topic] = seq
            self._last.pop(topic, None)

    def observe(self, topic: str, seq: int) -> SeqVerdict:
        """Classify message `seq` on `topic` and remember it when accepted."""
        floor = self._floor.get(topic)
        if floor is not None:
            if seq <= floor:
                return SeqVerdict(SeqKind.STALE)
            del self._floor[topic]
            self._last[topic] = seq
            if seq == floor + 1:
                return SeqVerdict(SeqKind.NEXT)
            return SeqVerdict(SeqKind.GAP, seq - floor - 1)
        last = self._last.get(topic)
        self._last[topic] = seq
        if last is None:
            return SeqVerdict(SeqKind.FIRST)
        if seq == last + 1:
            return SeqVerdict(SeqKind.NEXT)
        if seq > last:
            return SeqVerdict(SeqKind.GAP, seq - last - 1)
        # One PUB socket delivers a topic in order without duplicates, so going back can only
        # mean a new publisher (restart): accept rather than drop its messages forever.
        return SeqVerdict(SeqKind.RESET)

    def last_seq(self, topic: str) -> int | None:
        """Return the last accepted seq on topic, or None."""
        return self._last.get(topic)
