"""Entry point of ``python -m tlcore``."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tlcore.native_logs import native_info_lines_hidden  # noqa: E402 - no TensorFlow in it

with native_info_lines_hidden():  # TensorFlow loads here, and logs before absl is set up
    from tlcore.cli import main

sys.exit(main())
