"""``python -m bench.detection``: see :mod:`bench.detection`."""

from bench.detection.run import main

raise SystemExit(main())
