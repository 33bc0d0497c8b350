"""``python -m bids_app.simulate`` is ``hemocoupling-simulate``."""

import sys

from bids_app.cli.simulate import main

sys.exit(main())
