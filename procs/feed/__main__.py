"""`python -m procs.feed`: run the feed (see procs.feed.main)."""

import sys

from procs.feed.main import main

sys.exit(main())
