"""Put first on ``PYTHONPATH``, this makes ``import ackermann_msgs`` fail as on a machine
without the package, although ``make test`` installs it into the venv (the nodes' error
path for a missing ackermann_msgs is tested that way)."""

raise ImportError("No module named 'ackermann_msgs' (hidden by the tests)")
