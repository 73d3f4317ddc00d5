"""``python -m multiengine``: the same as the ``multiengine`` command."""

import sys

from .cluster.cli import main

if __name__ == "__main__":
    sys.exit(main())
