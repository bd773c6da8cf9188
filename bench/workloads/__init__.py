"""Workloads register themselves in ``harness.WORKLOADS`` when imported.

To add one: write ``bench/workloads/<name>.py`` that calls ``harness.register``
(see ``perop.py`` for the pattern) and add its import below. The table lists
workloads in this import order.
"""
from . import perop  # noqa: F401
from . import mlp231  # noqa: F401
from . import digits  # noqa: F401
from . import moons_scalar  # noqa: F401
from . import moons_vec  # noqa: F401
from . import moons_raw  # noqa: F401
from . import bigbatch  # noqa: F401
from . import cnn  # noqa: F401
from . import charlm  # noqa: F401
from . import lstm  # noqa: F401
from . import ddp  # noqa: F401
from . import ops  # noqa: F401
