"""`python -m procs.trader`: run the trader (see procs.trader.main)."""

import sys

from procs.trader.main import main

sys.exit(main())
