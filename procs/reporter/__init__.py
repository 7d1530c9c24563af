"""The reporter: the program's private code (procs.reporter.main is its entry point;
procs.reporter.daily its daily-report job, which `slt report` runs too)."""
