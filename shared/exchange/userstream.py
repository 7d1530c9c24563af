"""The user-data stream: listenKey lifecycle, reconnects, and a resync after every (re)connect.

BINANCE-API.md §6: a listenKey comes from `POST /fapi/v1/listenKey` (idempotent: it returns the
active key, extended), lives 60 minutes after its last keep-alive (`PUT`), and an unknown or expired
key answers -1125. When a key in use expires the server pushes `listenKeyExpired` and no more
events follow, while the socket may stay open (§6.3). Events sent while no socket was connected
are lost for good, hence the resync.

`UserDataStream`:
- connects to `/private/ws?listenKey=<key>` (raw frames), fetching the key with `create_listen_key`
  before every (re)connect, so an expired key is replaced on the way;
- keeps the key alive every `listen_key_keepalive_s`; a keep-alive failing with code -1125 (any
  exception whose `code` is -1125, e.g. `errors.UnknownListenKeyError`) or a `listenKeyExpired`
  event forces a reconnect, which fetches a new key; other keep-alive failures are retried with
  back-off;
- awaits `resync` after every socket opens (first connect, reconnect, rollover), with the socket
  already read into the queue: the caller fetches positions and open orders over REST, applies
  them, then the queued events (newer). A failing resync drops the socket and reconnects;
- never drops an event: the queue blocks the reader when full (`streams.Inbox`, policy "block");
- has no silence timeout (an account can be quiet for hours): a caller whose REST polling shows
  changes the stream never delivered calls `mark_suspect()` to force a reconnect and resync.

The create/keep-alive callables are the REST client's `listen_key_create`/`listen_key_keepalive`
or anything with the same shape.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import numpy

from shared import log
from shared.config import StreamsConfig
from shared.exchange.frames import StreamMessage, reconnect_delay_s, user_data_url
from shared.exchange.inbox import Inbox, StreamItem
from shared.exchange.streams import StreamConnection, StreamStats

UNKNOWN_LISTEN_KEY_CODE = -1125  # Binance: "This listenKey does not exist."

_log = log.get("exchange")


class UserDataStream:
    """The account's event stream; use as `async with UserDataStream(...) as stream:`."""

    def __init__(
        self,
        ws_url: str,
        create_listen_key: Callable[[], Awaitable[str]],
        keepalive_listen_key: Callable[[str], Awaitable[object]],
        resync: Callable[[], Awaitable[None]],
        settings: StreamsConfig,
        *,
        rng: numpy.random.Generator | None = None,
    ) -> None:
        self.settings = settings
        self._ws_url = ws_url
        self._create = create_listen_key
        self._keepalive = keepalive_listen_key
        self._resync = resync
        self._rng = rng or numpy.random.default_rng()
        self.listen_key = ""  # the key of the current socket ("" before the first connect)
        self.resyncs = 0  # completed resync calls
        self.listen_keys_created = 0  # create calls that returned a key
        self.keepalive_failures = 0
        self.inbox = Inbox(settings.queue_max_messages, "block")
        self.connection = StreamConnection(
            "private-0",
            self._next_url,
            ("userData",),
            settings,
            self.inbox,
            is_combined=False,
            is_user_data=True,
            silence_timeout_s=None,
            on_open=self._on_open,
            inspect=self._inspect,
            rng=self._rng,
        )
        self._keeper: asyncio.Task[None] | None = None

    async def __aenter__(self) -> UserDataStream:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Start connecting and keeping the key alive (in the background)."""
        self.connection.start()
        if self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep_alive())

    async def close(self) -> None:
        """Stop the keep-alive and close the socket; the listenKey is left to expire."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        await self.connection.close()

    def mark_suspect(self, reason: str = "suspect") -> None:
        """Declare the stream dead although connected (REST shows changes it did not deliver):
        reconnect, which fetches a key and resyncs."""
        _log.warning("user_stream_suspect", reason=reason)
        self.connection.mark_suspect(reason)

    async def get(self) -> StreamItem:
        """Wait for the next user-data event (a `StreamMessage`) or `Gap`."""
        return await self.inbox.get()

    def __aiter__(self) -> UserDataStream:
        return self

    async def __anext__(self) -> StreamItem:
        return await self.inbox.get()

    def stats(self) -> StreamStats:
        """Return the connection's counters."""
        return self.connection.stats()

    # --- hooks of the connection --------------------------------------------------------------

    async def _next_url(self) -> str:
        key = await self._create()
        if key != self.listen_key and self.listen_key:
            _log.info("listen_key_replaced", listen_key=key[:4] + "…")
        self.listen_key = key
        self.listen_keys_created += 1
        return user_data_url(self._ws_url, key)

    async def _on_open(self) -> None:
        await self._resync()
        self.resyncs += 1
        _log.info("user_stream_resynced", resyncs=self.resyncs)

    def _inspect(self, message: StreamMessage) -> None:
        if message.event_type == "listenKeyExpired":
            self.connection.mark_suspect("listen_key_expired")

    async def _keep_alive(self) -> None:
        """PUT the listenKey every `listen_key_keepalive_s`; -1125 reconnects, errors retry."""
        s = self.settings
        attempt = 0
        while True:
            delay = (
                s.listen_key_keepalive_s
                if attempt == 0
                else min(
                    reconnect_delay_s(attempt, s.reconnect_base_s, s.reconnect_cap_s, self._rng),
                    s.listen_key_keepalive_s,
                )
            )
            await asyncio.sleep(delay)
            if not self.listen_key:
                continue
            try:
                await asyncio.wait_for(self._keepalive(self.listen_key), s.user_call_timeout_s)
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:  # top of the keep-alive loop: classify, log, recover
                self.keepalive_failures += 1
                if getattr(e, "code", None) == UNKNOWN_LISTEN_KEY_CODE:
                    _log.warning("listen_key_unknown", listen_key=self.listen_key[:4] + "…")
                    attempt = 0
                    self.connection.mark_suspect("listen_key_unknown")
                else:
                    attempt += 1
                    _log.warning(
                        "listen_key_keepalive_failed", error=repr(e)[:200], attempt=attempt
                    )
