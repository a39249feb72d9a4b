"""``python -m leakwatch`` is the same as the ``leakwatch`` console script."""
from leakwatch.cli import main

raise SystemExit(main())
