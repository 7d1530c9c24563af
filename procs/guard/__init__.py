"""The position-guard: the program's private code (procs.guard.main is its entry point)."""
