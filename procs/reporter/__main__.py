"""`python -m procs.reporter`: run the reporter (see procs.reporter.main)."""

import sys

from procs.reporter.main import main

sys.exit(main())
