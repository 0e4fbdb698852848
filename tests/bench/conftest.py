"""The bench scripts run as files (``python bench/x.py``) and import their neighbours by bare
name (``import common``), so their folder goes on the path for these tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
