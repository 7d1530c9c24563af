"""`python -m procs.cli`: the `slt` command."""

import sys

from procs.cli.main import main

sys.exit(main())
