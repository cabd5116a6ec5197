"""The ``python -m wgmesh.mesh`` command line: one sub-command per module under :mod:`wgmesh.mesh.commands`.

These are the offline commands (check, render, graph), which need nothing above the core. The ``wgmesh`` console
script (:mod:`wgmesh.cli.main`) is this same parser plus the commands that need the lab (``lab``, ``demo``), which live
in :mod:`cli` so that the core never imports the lab.

Each command module exposes ``register(subparsers)`` which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning the exit code. User mistakes (:class:`UserError`, bad mesh
descriptions) are printed as plain messages, never as tracebacks.

Exit codes: 0 success, 1 the input is invalid, a file cannot be read or written, a needed tool is missing or a check
failed, 2 the command line itself is wrong, 130 interrupted (Ctrl-C). A reader closing the output early
(``python -m wgmesh.mesh graph ... | head``) is not an error: the command stops quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from wgmesh.mesh.errors import MeshConfigError

COMMAND_MODULES = ("check", "render", "graph")

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class UserError(Exception):
    """A mistake the user can fix (a missing file, a bad flag value): printed as ``error: <message>``."""


def build_parser(
    extra: Sequence[str] = (),
    prog: str = "python -m wgmesh.mesh",
    description: str = "wgmesh: validate, render and inspect WireGuard full-mesh descriptions.",
) -> argparse.ArgumentParser:
    """The parser of :data:`COMMAND_MODULES`, then of ``extra`` (full module names, each with ``register``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Exit codes: 0 success, 1 invalid input, unusable file, missing tool or failed check, 2 bad command line, "
        "130 interrupted. Every command has --help.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in (*(f"wgmesh.mesh.commands.{name}" for name in COMMAND_MODULES), *extra):
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    args = (parser or build_parser()).parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # inside the try: a closed pipe must surface here, not in the interpreter's exit flush
        return code
    except MeshConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:
        # The reader went away (`| head`): not the user's mistake, nothing left to say. Point stdout at /dev/null
        # so that the interpreter's final flush does not fail a second time and print a traceback after all.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    except OSError as exc:
        # A file the command opened itself (an output path, a directory) that the system refused: the user's to fix.
        where = f"{exc.filename}: " if exc.filename is not None else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
