"""The trader: the program's private code (procs.trader.main is its entry point)."""
