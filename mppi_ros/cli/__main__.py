"""``python -m mppi_ros.cli``: the ``mppi-ros`` command."""

import sys

from mppi_ros.cli import main

sys.exit(main())
