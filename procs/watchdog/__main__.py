"""`python -m procs.watchdog`: run the watchdog (see procs.watchdog.main)."""

import sys

from procs.watchdog.main import main

sys.exit(main())
