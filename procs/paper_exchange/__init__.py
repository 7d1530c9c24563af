"""The paper exchange: a local protocol twin of Binance USDT-M futures (procs.paper_exchange.main
is its entry point). It shares no code with shared.exchange, the client."""
