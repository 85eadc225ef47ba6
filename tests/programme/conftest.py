"""Lets the programme tests import their shared hand-made set (``handmade.py``) by name."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
