"""``wgmesh``: the console script (``[project.scripts]`` in pyproject.toml) with every command.

The offline commands and the error handling are :mod:`wgmesh.mesh.cli`'s; this module only adds the lab's commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from wgmesh.mesh import cli as core_cli

LAB_COMMANDS = ("wgmesh.cli.lab", "wgmesh.cli.demo")


def invocation() -> str:
    """The command as the user typed it (``sudo .venv/bin/wgmesh``), so that the hints we print can be pasted back:
    on a fresh machine ``wgmesh`` is in ``.venv/bin``, not on PATH."""
    typed = sys.argv[0] if sys.argv and Path(sys.argv[0]).name == "wgmesh" else "wgmesh"
    sudo = "sudo " if os.environ.get("SUDO_USER") and os.geteuid() == 0 else ""
    return sudo + typed


def build_parser() -> argparse.ArgumentParser:
    return core_cli.build_parser(
        LAB_COMMANDS,
        prog="wgmesh",
        description="wgmesh: validate, render and draw WireGuard full-mesh descriptions, and build them on a local lab.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    return core_cli.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
