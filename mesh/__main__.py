"""``python -m wgmesh.mesh``: the offline command line."""

import sys

from wgmesh.mesh.cli import main

sys.exit(main())
