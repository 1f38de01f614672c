"""``python -m server`` is the ``dso`` command."""

import sys

from server.cli import main

sys.exit(main())
