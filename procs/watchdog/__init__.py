"""The watchdog: the program's private code (procs.watchdog.main is its entry point)."""
