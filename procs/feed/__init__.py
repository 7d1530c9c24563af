"""The feed: the program's private code (procs.feed.main is its entry point)."""
