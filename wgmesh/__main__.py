"""``python -m wgmesh``: the ``wgmesh`` command, every sub-command; ``python -m wgmesh.mesh`` has the offline ones."""

import sys

from wgmesh.cli.main import main

sys.exit(main())
