"""The paper account's listenKey lifecycle (BINANCE-API.md §6.1, §6.3), driven by real-time
arguments, without sockets."""

from __future__ import annotations

import itertools

import pytest

from procs.paper_exchange.web.userstream import (
    ListenKeys,
    UnknownListenKeyError,
    listen_key_expired_event,
    random_listen_key,
)

T0 = 1_800_000_000_000


def keys() -> ListenKeys:
    counter = itertools.count(1)
    return ListenKeys(validity_s=3600, new_key=lambda: f"key{next(counter)}")


def test_random_listen_key_is_64_alphanumeric_characters() -> None:
    key = random_listen_key()
    assert len(key) == 64 and key.isalnum()


def test_post_returns_the_same_key_while_active_and_extends_it() -> None:
    lk = keys()
    assert lk.open(T0) == "key1"
    assert lk.open(T0 + 3_000_000) == "key1"
    assert lk.active(T0 + 3_600_000 + 1_000_000) == "key1"


def test_put_without_a_key_extends_the_active_key() -> None:
    lk = keys()
    lk.open(T0)
    assert lk.keepalive(None, T0 + 3_500_000) == "key1"
    assert lk.active(T0 + 7_000_000) == "key1"


def test_put_of_an_unknown_or_expired_key_raises() -> None:
    lk = keys()
    with pytest.raises(UnknownListenKeyError):
        lk.keepalive(None, T0)
    lk.open(T0)
    with pytest.raises(UnknownListenKeyError):
        lk.keepalive("other", T0)
    with pytest.raises(UnknownListenKeyError):
        lk.keepalive("key1", T0 + 3_600_000)


def test_expiry_is_announced_once_and_post_then_creates_a_new_key() -> None:
    lk = keys()
    lk.open(T0)
    assert lk.take_expired(T0 + 3_599_999) == []
    assert lk.take_expired(T0 + 3_600_000) == ["key1"]
    assert lk.take_expired(T0 + 3_600_001) == []
    assert lk.active(T0 + 3_600_001) is None
    assert lk.open(T0 + 3_600_002) == "key2"


def test_delete_invalidates_the_key_without_an_expiry_notice() -> None:
    lk = keys()
    lk.open(T0)
    assert lk.close(None, T0 + 1) == "key1"
    assert lk.active(T0 + 2) is None
    assert lk.take_expired(T0 + 3) == []
    with pytest.raises(UnknownListenKeyError):
        lk.close("key1", T0 + 4)


def test_expire_all_expires_the_active_key_at_once() -> None:
    lk = keys()
    lk.open(T0)
    assert lk.expire_all(T0 + 5) == ["key1"]
    assert lk.take_expired(T0 + 6) == ["key1"]
    assert lk.active(T0 + 7) is None


def test_state_round_trip_keeps_the_key_and_its_expiry() -> None:
    lk = keys()
    lk.open(T0)
    restored = ListenKeys.from_state(lk.to_state(), validity_s=3600)
    assert restored.active(T0 + 3_599_999) == "key1"
    assert restored.take_expired(T0 + 3_600_000) == ["key1"]


def test_listen_key_expired_event_has_a_string_event_time() -> None:
    assert listen_key_expired_event("key1", 1736996475556) == {
        "e": "listenKeyExpired",
        "E": "1736996475556",
        "listenKey": "key1",
    }
