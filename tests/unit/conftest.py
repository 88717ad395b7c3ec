"""The unit tests share one in-memory driver: tests/unit/fakes.py, imported as ``fakes``."""

import os
import sys

UNIT = os.path.dirname(os.path.abspath(__file__))
if UNIT not in sys.path:
    sys.path.insert(0, UNIT)
