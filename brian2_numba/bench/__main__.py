"""``python -m brian2_numba.bench``: see :mod:`brian2_numba.bench.cli`."""

import sys

from .cli import main

sys.exit(main())
