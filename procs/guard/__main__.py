"""`python -m procs.guard`: run the position-guard (see procs.guard.main)."""

import sys

from procs.guard.main import main

sys.exit(main())
