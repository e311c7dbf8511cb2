"""``python -m mr2ct``: the same command line as the ``mr2ct`` console script."""

from mr2ct.cli import main

raise SystemExit(main())
