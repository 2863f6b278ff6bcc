"""Run the ntpauto command: ``python -m ntpauto.cli``."""

import sys

from ntpauto.cli import main

sys.exit(main())
