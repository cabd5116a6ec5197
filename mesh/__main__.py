"""``python -m mesh``: the offline command line."""

import sys

from mesh.cli import main

sys.exit(main())
