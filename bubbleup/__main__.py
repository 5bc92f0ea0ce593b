"""``python -m bubbleup``: see bubbleup.cli."""

import sys

from bubbleup.cli import main

if __name__ == "__main__":
    sys.exit(main())
