"""Test providers: stand-ins for the ``command`` and ``random`` Pulumi provider plugins, for the tests only.

The real Pulumi engine drives our program (through the Automation API) in the tests, but the official plugins,
``pulumi-resource-command`` (pulumi-command 1.2.1) and ``pulumi-resource-random`` (pulumi-random 4.x), are not on
the machines the tests run on, and cannot be downloaded there. The engine loads any executable named
``pulumi-resource-<name>`` found on ``PATH``, so these are our own, in Python, speaking Pulumi's provider gRPC
protocol and implementing exactly the resources and properties the program uses, with the official semantics
(each module's docstring says which, and what differs):

* :mod:`testproviders.command`: ``command:local:Command`` and ``command:remote:Command`` (SSH through the system
  ``ssh`` client: :mod:`testproviders.ssh`);
* :mod:`testproviders.random`: ``RandomBytes`` and ``RandomPassword``;
* :mod:`testproviders.server`: the shared gRPC plumbing.

They are test equipment: not part of the wheel (pyproject's package list leaves them out), never installed for
users. :func:`install_shims` writes the two executables into a directory the tests then put first on ``PATH``.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROVIDERS = {"command": "testproviders.command", "random": "testproviders.random"}


def install_shims(directory: Path, python: str = sys.executable) -> list[Path]:
    """Write executable ``pulumi-resource-command`` and ``pulumi-resource-random`` into ``directory``; their paths.

    Each runs ``python -m testproviders.<name> "$@"`` with this repository first on ``PYTHONPATH``, so it works
    from any working directory (the engine starts plugins in the program's).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, module in PROVIDERS.items():
        path = directory / f"pulumi-resource-{name}"
        script = (
            "#!/bin/sh\n"
            f"# Test provider (wgmesh testproviders), not the official pulumi-resource-{name}.\n"
            f"PYTHONPATH={shlex.quote(str(REPO))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
            "export PYTHONPATH\n"
            f'exec {shlex.quote(python)} -m {module} "$@"\n'
        )
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(script, encoding="utf-8")
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        written.append(path)
    return written
