"""``python -m hq ...`` = ``storesense hq ...``, also before the entry point is installed."""

import sys

from edge.cli import main

sys.exit(main(["hq", *sys.argv[1:]], extra_modules=["hq.cli"]))
