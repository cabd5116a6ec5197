"""The ``python -m mesh`` command line: one sub-command per module under :mod:`mesh.commands`.

Each command module exposes ``register(subparsers)`` which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning the exit code. User mistakes (:class:`UserError`, bad mesh
descriptions) are printed as plain messages, never as tracebacks.

Exit codes: 0 success, 1 the input is invalid or a check failed, 2 the command line itself is wrong.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mesh.errors import MeshConfigError

COMMAND_MODULES = ("check", "render", "graph")

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class UserError(Exception):
    """A mistake the user can fix (a missing file, a bad flag value): printed as ``error: <message>``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mesh",
        description="wgmesh: validate, render and inspect WireGuard full-mesh descriptions.",
        epilog="Exit codes: 0 success, 1 invalid input or failed check, 2 bad command line.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"mesh.commands.{module_name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MeshConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
