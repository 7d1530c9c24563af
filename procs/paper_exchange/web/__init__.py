"""The paper exchange's web side: Binance's REST and WebSocket surfaces and the /_sim/ control
API."""
