"""A wheel built the way ``pip install git+<repo>`` builds it: from a clean copy of the checkout.

``pip wheel <repo>`` builds in place, and setuptools then reuses the repository's ignored ``build/`` directory: files
of modules that were since moved or deleted end up in the wheel (a stale ``build/lib/components`` gave the wheel a
top-level ``components`` package long after it had moved under ``wgmesh``). A clone has no ``build/``; neither has
this copy: the files git tracks plus the untracked ones it does not ignore, so that uncommitted work is built too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.program_harness import REPO


def clean_copy(destination: Path) -> Path:
    """The checkout's files, without anything git ignores, copied under ``destination``."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source = REPO / relative
        if source.is_file():  # a tracked file deleted in the working tree is not built
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def build_wheel(workdir: Path) -> Path:
    """The wheel of a clean copy of the checkout, built under ``workdir``."""
    source = clean_copy(workdir / "source")
    out = workdir / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    return next(out.glob("wgmesh-*.whl"))
