"""The paper exchange's server: `PaperExchange`, the aiohttp app, the step loop and the state file.

Serves, on one port, every public endpoint (`public.py`), every signed endpoint of
`engine.routes()` (plus `GET /fapi/v1/leverageBracket`, USER_DATA on Binance), the listenKey
endpoints and WebSocket routes of `ws.py`, and the `/_sim/...` control API (`control.py`).
`PaperExchange` owns the clock, market, engine, listenKeys, stream hub, rate-limit counters, fault
switches and the `--state` file (DESIGN.md "Server ↔ WebSocket interface"). The REST middleware,
error replies and headers are in `rest.py`.

Time: the step loop advances simulated time in 250 ms steps and calls `engine.tick(step_ms)` for
every step boundary passed, in order, so a stop can never be skipped at `--speed 60`; a request
that reaches the engine first ticks up to "now", so the engine never sees time go backwards.
Catch-up is capped at `max_catch_up_s` (beyond it the engine skips ahead). Market streams get
`hub.on_step(now_ms)` once per real `ws_push_interval_ms`. Requests and the loop share one event
loop, so nothing needs a lock.

State: saved after every state-changing request before it is answered, and by the step loop at
most every `state_save_interval_s` while dirty or while the engine's state differs from the last
save (orders fill and funding settles without any request). A file lock next to the state file
keeps a second paper exchange off the same account; the port bind keeps it off the same port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

from procs.paper_exchange.clock import SimClock
from procs.paper_exchange.engine.core import Engine, EngineConfig
from procs.paper_exchange.errors import ApiError
from procs.paper_exchange.instance import InstanceError, listening_socket, state_lock
from procs.paper_exchange.loading import Inputs, load_inputs, resolve_path
from procs.paper_exchange.market.prices import Market
from procs.paper_exchange.market.replay import DataError
from procs.paper_exchange.market.wire import leverage_bracket_body
from procs.paper_exchange.state import STATE_VERSION, StateError, encode_state, save_state
from procs.paper_exchange.web.auth import check_api_key
from procs.paper_exchange.web.control import add_control_routes
from procs.paper_exchange.web.faults import Faults
from procs.paper_exchange.web.public import PublicEndpoints, rate_limits_body
from procs.paper_exchange.web.ratelimit import Limits, RateLimiter
from procs.paper_exchange.web.rest import (
    PX_KEY,
    EngineHandler,
    binance_middleware,
    register_rest_routes,
)
from procs.paper_exchange.web.userstream import ListenKeys
from procs.paper_exchange.web.ws import StreamHub, add_ws_routes
from shared import log
from shared.config import PaperExchangeConfig

__all__ = [
    "DataError",
    "Faults",
    "InstanceError",
    "PaperExchange",
    "StateError",
    "build_app",
    "open_paper_exchange",
    "run_paper_exchange",
]

_log = log.get("paper_exchange")

STEP_MS = 250  # simulated milliseconds per engine tick (DESIGN.md "Time")
MAX_STEPS_PER_SLICE = 2000  # ticks per step-loop slice before requests get a turn
MIN_SLEEP_S = 0.005  # the step loop never spins faster than this
SHUTDOWN_TIMEOUT_S = 5.0  # in-flight requests get this long at shutdown


def wall_ms() -> int:
    """Return the wall clock in integer UTC milliseconds."""
    return time.time_ns() // 1_000_000


class Stats:
    """Counters of the periodic `paper_exchange_stats` line, reset after each line."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.orders = 0
        self.state_saves = 0


class PaperExchange:
    """The one object that owns the running exchange (see the module docstring).

    The web handlers see it as `web.host.ExchangeHost`, which it satisfies structurally; mypy
    checks that where `build_app` hands it to them.
    """

    def __init__(
        self,
        cfg: PaperExchangeConfig,
        clock: SimClock,
        market: Market,
        engine: Engine,
        listen_keys: ListenKeys,
        inputs: Inputs,
        epoch_ms: int,
        last_step_ms: int,
        real_time: Callable[[], int] = wall_ms,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.market = market
        self.engine = engine
        self.listen_keys = listen_keys
        self.brackets = inputs.brackets
        self.state_path = inputs.state_path
        self.epoch_ms = epoch_ms
        self.last_step_ms = last_step_ms  # the last step boundary the engine has ticked
        self._real_time = real_time
        limits = rate_limits_body(
            cfg.request_weight_limit_1m, cfg.order_limit_1m, cfg.order_limit_10s
        )
        self.public = PublicEndpoints(market, inputs.specs, limits)
        self.faults = Faults()
        self.hub = StreamHub(self)
        self.faults.bind(self.hub.drop_all, self.listen_keys.expire_all)
        self.limiter = RateLimiter(
            Limits(
                cfg.request_weight_limit_1m,
                cfg.order_limit_10s,
                cfg.order_limit_1m,
                cfg.ban_after_429s,
                int(cfg.ban_s * 1000),
            )
        )
        self.stats = Stats()
        self.is_dirty = False
        self._saved_engine = b""
        self._tick_failures = 0

    # --- what ws.py, rest.py and control.py use -------------------------------------------------

    def now_ms(self) -> int:
        """Return the simulated time in integer UTC milliseconds."""
        return self.clock.now(self.real_ms())

    def real_ms(self) -> int:
        """Return the wall time in integer UTC milliseconds."""
        return self._real_time()

    def mark_dirty(self) -> None:
        """Note a state change; it is saved before the reply or within `state_save_interval_s`."""
        self.is_dirty = True

    def check_api_key(self, request: web.Request) -> None:
        """Check `X-MBX-APIKEY` (USER_STREAM security); raise ApiError -2014/-2015 (HTTP 401)."""
        check_api_key(request.headers.get("X-MBX-APIKEY"), self.cfg.api_key, request.remote or "")

    def advance(self, now_ms: int, max_steps: int | None = None) -> bool:
        """Tick the engine at every step boundary up to `now_ms`; False if max_steps cut it short.

        Never raises: a failing tick is logged (rate-limited) and counts as done, so one bad step
        cannot wedge the exchange.
        """
        target = now_ms - now_ms % STEP_MS
        cap_ms = int(self.cfg.max_catch_up_s * 1000)
        if target - self.last_step_ms > cap_ms:
            resume_ms = target - cap_ms - (target - cap_ms) % STEP_MS
            _log.warning(
                "catch_up_capped",
                behind_ms=target - self.last_step_ms,
                skipped_ms=resume_ms - self.last_step_ms,
            )
            self.last_step_ms = resume_ms
        steps = 0
        while self.last_step_ms < target:
            if max_steps is not None and steps >= max_steps:
                return False
            step_ms = self.last_step_ms + STEP_MS
            try:
                self.engine.tick(step_ms)
            except Exception as e:  # recovery: log, count the step as done, go on
                self._tick_failures += 1
                if self._tick_failures <= 3 or self._tick_failures % 1000 == 0:
                    _log.exception(
                        "tick_failed", step_ms=step_ms, failures=self._tick_failures, error=repr(e)
                    )
            self.last_step_ms = step_ms
            steps += 1
            self.publish(step_ms)
        return True

    def publish(self, now_ms: int) -> None:
        """Send the engine's pending user-data events to the user streams."""
        events = self.engine.drain_events()
        if events:
            self.mark_dirty()
            self.hub.push_user_events(events, now_ms)

    def signed_routes(self) -> dict[tuple[str, str], EngineHandler]:
        """Return the engine's routes plus leverageBracket (USER_DATA on Binance, §5.15)."""
        routes: dict[tuple[str, str], EngineHandler] = {
            ("GET", "/fapi/v1/leverageBracket"): self._leverage_bracket
        }
        for (method, path), handler in self.engine.routes().items():
            if path != "/fapi/v1/listenKey":  # ws.py serves the listenKey lifecycle
                routes[(method, path)] = handler
        return routes

    def _leverage_bracket(self, params: dict[str, str], _now_ms: int) -> Any:
        symbol = params.get("symbol") or None
        if symbol is not None and symbol not in self.brackets:
            raise ApiError(400, -1121, "Invalid symbol.")
        return leverage_bracket_body(self.brackets, symbol)

    # --- state -----------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Return the JSON-able state document (`state.py` format)."""
        return {
            "version": STATE_VERSION,
            "clock": self.clock.to_state(self.real_ms()),
            "epoch_ms": self.epoch_ms,
            "last_step_ms": self.last_step_ms,
            "engine": self.engine.to_state(),
            "listen_keys": self.listen_keys.to_state(),
        }

    def save(self) -> None:
        """Write the state file now; a disk error is logged (ERROR) and the state stays dirty."""
        doc = self.to_state()
        try:
            save_state(self.state_path, encode_state(doc), self.cfg.fsync_state)
        except OSError as e:
            _log.error("state_save_failed", path=self.state_path, error=e.strerror or repr(e))
            self.is_dirty = True
            return
        self._saved_engine = encode_state(doc["engine"])
        self.is_dirty = False
        self.stats.state_saves += 1

    def save_if_dirty(self) -> None:
        """Save when a change is pending."""
        if self.is_dirty:
            self.save()

    def save_if_changed(self) -> None:
        """Save when dirty or when the engine's state differs from the last save."""
        if self.is_dirty or encode_state(self.engine.to_state()) != self._saved_engine:
            self.save()

    # --- reporting -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Return the `GET /_sim/status` document."""
        real = self.real_ms()
        overrides = {s: str(p) for s in self.market.symbols if (p := self.market.override(s))}
        return {
            "sim_time_ms": self.clock.now(real),
            "real_time_ms": real,
            "speed": self.clock.speed,
            "is_paused": self.clock.is_paused,
            "epoch_ms": self.epoch_ms,
            "last_step_ms": self.last_step_ms,
            "faults": self.faults.to_status(real),
            "price_overrides": overrides,
            "ws_connections": len(self.hub.connections),
            "state_path": str(self.state_path),
        }

    def log_stats(self) -> None:
        """Log the periodic `paper_exchange_stats` line and reset the counters."""
        s = self.stats
        _log.info(
            "paper_exchange_stats",
            requests=s.requests,
            errors=s.errors,
            orders=s.orders,
            ws_connections=len(self.hub.connections),
            state_saves=s.state_saves,
            sim_time_ms=self.now_ms(),
            speed=self.clock.speed,
            is_paused=self.clock.is_paused,
        )
        self.stats = Stats()


def engine_config(cfg: PaperExchangeConfig) -> EngineConfig:
    """Map the paper exchange's config onto the engine's."""
    return EngineConfig(
        initial_balance_usdt=Decimal(str(cfg.initial_balance_usdt)),
        maker_fee_rate=Decimal(str(cfg.maker_fee_rate)),
        taker_fee_rate=Decimal(str(cfg.taker_fee_rate)),
        market_slippage_bps=Decimal(str(cfg.market_slippage_bps)),
        countdown_cancels_algo=cfg.countdown_cancels_algo,
        order_limit_10s=cfg.order_limit_10s,
        order_limit_1m=cfg.order_limit_1m,
    )


def open_paper_exchange(
    cfg: PaperExchangeConfig, real_time: Callable[[], int] = wall_ms
) -> tuple[PaperExchange, bool]:
    """Read data and state and build the exchange; return it and whether the account is new.

    Raises DataError (data unusable) and StateError (state file corrupt or not restorable).
    """
    inputs = load_inputs(cfg)
    state = inputs.state
    real = real_time()
    try:
        if state is None:
            clock = SimClock(cfg.speed, real)
            now = clock.now(real)
            epoch_ms, last_step_ms = now - now % 60_000, now - now % STEP_MS
        else:
            clock = SimClock.from_state(state["clock"], real)
            clock.set_speed(cfg.speed, real)  # the configured speed applies from this start on
            epoch_ms, last_step_ms = state["epoch_ms"], state["last_step_ms"]
        market = Market(inputs.replay, inputs.specs, epoch_ms)
        engine_state = None if state is None else state["engine"]
        engine = Engine(inputs.specs, inputs.brackets, market, engine_config(cfg), engine_state)
        if state is None:
            listen_keys = ListenKeys(cfg.listen_key_validity_s)
        else:
            listen_keys = ListenKeys.from_state(state["listen_keys"], cfg.listen_key_validity_s)
    except (KeyError, TypeError, ValueError, ArithmeticError) as e:
        if state is None or isinstance(e, DataError):
            raise
        raise StateError(
            f"paper state {inputs.state_path}: cannot be restored ({type(e).__name__}: {e})"
        ) from None
    px = PaperExchange(
        cfg, clock, market, engine, listen_keys, inputs, epoch_ms, last_step_ms, real_time
    )
    return px, state is None


def build_app(px: PaperExchange) -> web.Application:
    """Return the aiohttp app: Binance REST routes, WebSocket routes and the control API."""
    app = web.Application(middlewares=[binance_middleware], client_max_size=1 << 20)
    app[PX_KEY] = px
    register_rest_routes(app, px, px.public.routes(), px.signed_routes())
    add_ws_routes(app, px, px.hub)
    add_control_routes(app, px)
    return app


async def run_steps(px: PaperExchange) -> None:
    """Advance time, push market streams, save changed state and log stats until cancelled."""
    loop = asyncio.get_running_loop()
    cfg = px.cfg
    push_s = cfg.ws_push_interval_ms / 1000
    next_push = next_save = loop.time()
    next_stats = loop.time() + cfg.stats_interval_s
    failures = 0
    while True:
        try:
            now_ms = px.now_ms()
            is_caught_up = px.advance(now_ms, MAX_STEPS_PER_SLICE)
            t = loop.time()
            if is_caught_up and t >= next_push:
                px.hub.on_step(now_ms)
                next_push = next_push + push_s if next_push + push_s > t else t + push_s
            if t >= next_save:
                px.save_if_changed()
                next_save = t + cfg.state_save_interval_s
            if t >= next_stats:
                px.log_stats()
                next_stats = t + cfg.stats_interval_s
            if not is_caught_up:
                await asyncio.sleep(0)  # let requests in between slices of a long catch-up
                continue
            delay = next_push - loop.time()
            if not px.clock.is_paused:
                to_step_ms = px.last_step_ms + STEP_MS - px.now_ms()
                delay = min(delay, to_step_ms / px.clock.speed / 1000)
            await asyncio.sleep(min(max(delay, MIN_SLEEP_S), push_s))
        except Exception as e:  # recovery: log (rate-limited), wait one push interval, go on
            failures += 1
            if failures <= 3 or failures % 100 == 0:
                _log.exception("step_loop_failed", failures=failures, error=repr(e))
            await asyncio.sleep(push_s)


async def run_paper_exchange(cfg: PaperExchangeConfig, stop: asyncio.Event) -> None:
    """Serve the paper exchange on cfg.host:cfg.port until `stop` is set, then save and close.

    Raises InstanceError (state file locked or port in use), DataError and StateError. On
    cancellation the state is still saved and the sockets closed.
    """
    with state_lock(resolve_path(cfg.state_path)), listening_socket(cfg.host, cfg.port) as sock:
        px, is_new = open_paper_exchange(cfg)
        runner = web.AppRunner(
            build_app(px),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        is_serving = False
        try:
            await web.SockSite(runner, sock).start()
            is_serving = True
            px.save()
            if is_new:
                _log.info("state_created", path=px.state_path, sim_time_ms=px.now_ms())
            else:
                _log.info(
                    "state_loaded",
                    path=px.state_path,
                    sim_time_ms=px.now_ms(),
                    behind_ms=px.now_ms() - px.last_step_ms,
                )
            _log.info(
                "paper_exchange_started",
                host=cfg.host,
                port=cfg.port,
                speed=px.clock.speed,
                symbols=",".join(cfg.symbols),
                is_paused=px.clock.is_paused,
            )
            steps = asyncio.create_task(run_steps(px))
            try:
                await stop.wait()
            finally:
                steps.cancel()
                await asyncio.gather(steps, return_exceptions=True)
        finally:
            await runner.cleanup()  # closes WebSockets (ws.py's on_shutdown) and the listener
            if is_serving:
                px.save()
