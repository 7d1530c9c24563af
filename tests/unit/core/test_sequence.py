"""Per-topic sequence verdicts: gaps, the Clone pattern's snapshot floor, publisher resets."""

from __future__ import annotations

from shared.core.sequence import SeqKind, SeqVerdict, TopicSequences

TOPIC = "mark.BTCUSDT"


def kinds(tracker: TopicSequences, seqs: list[int], topic: str = TOPIC) -> list[SeqVerdict]:
    return [tracker.observe(topic, s) for s in seqs]


def test_consecutive_seqs_after_the_first_are_next() -> None:
    verdicts = kinds(TopicSequences(), [41, 42, 43])
    assert [v.kind for v in verdicts] == [SeqKind.FIRST, SeqKind.NEXT, SeqKind.NEXT]
    assert all(v.is_accepted and not v.needs_resync for v in verdicts)


def test_skipped_seq_is_a_gap_counting_the_missed_messages() -> None:
    verdict = kinds(TopicSequences(), [1, 2, 5])[-1]
    assert verdict == SeqVerdict(SeqKind.GAP, missed=2)
    assert verdict.is_accepted and verdict.needs_resync


def test_topics_are_sequenced_independently() -> None:
    tracker = TopicSequences()
    kinds(tracker, [1, 2])
    assert tracker.observe("mark.ETHUSDT", 9).kind is SeqKind.FIRST
    assert tracker.observe(TOPIC, 3).kind is SeqKind.NEXT


def test_snapshot_floor_drops_messages_at_or_below_it() -> None:
    tracker = TopicSequences()
    tracker.load_snapshot({TOPIC: 5})
    verdicts = kinds(tracker, [4, 5, 6, 7])
    assert [v.kind for v in verdicts] == [SeqKind.STALE, SeqKind.STALE, SeqKind.NEXT, SeqKind.NEXT]
    assert [v.is_accepted for v in verdicts] == [False, False, True, True]


def test_first_message_beyond_the_snapshot_successor_is_a_gap() -> None:
    tracker = TopicSequences()
    tracker.load_snapshot({TOPIC: 5})
    assert tracker.observe(TOPIC, 9) == SeqVerdict(SeqKind.GAP, missed=3)


def test_snapshot_replaces_what_was_tracked_live() -> None:
    tracker = TopicSequences()
    kinds(tracker, [1, 2, 3])
    tracker.load_snapshot({TOPIC: 10})
    assert tracker.observe(TOPIC, 4).kind is SeqKind.STALE
    assert tracker.observe(TOPIC, 11).kind is SeqKind.NEXT


def test_seq_going_back_on_a_live_topic_is_a_publisher_reset_and_accepted() -> None:
    tracker = TopicSequences()
    kinds(tracker, [100, 101])
    verdict = tracker.observe(TOPIC, 1)
    assert verdict.kind is SeqKind.RESET and verdict.is_accepted and verdict.needs_resync
    assert tracker.observe(TOPIC, 2).kind is SeqKind.NEXT
    assert tracker.last_seq(TOPIC) == 2
