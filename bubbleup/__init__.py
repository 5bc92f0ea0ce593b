"""bubbleup: Bubble-Up style contention testing harness.

This package must stay import-light: bubble processes import it, and every
megabyte imported here would be carried by every bubble.
"""

__version__ = "0.1.0"
SCHEMA_VERSION = 1
