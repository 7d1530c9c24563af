"""The reporter: the program's private code (procs.reporter.main is its entry point)."""
