"""`python -m procs.paper_exchange`: run the paper exchange (see procs.paper_exchange.main)."""

import sys

from procs.paper_exchange.main import main

sys.exit(main())
