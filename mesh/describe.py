"""Reading a mesh description file (YAML) for the CLI, keeping the line of every field.

The validated core speaks in field paths (``mesh.peers[1].subnets[0]``); a person editing a file wants a line
number too. So the YAML is composed into nodes first, every node's path is mapped to its line, and issues are
printed compiler-style (``mesh.yaml:14: mesh.peers[1].subnets[0]: ...``), which editors and CI logs link to.

YAML mistakes PyYAML accepts silently are caught here: a key given twice in one mapping (PyYAML keeps the last
one) is reported as an issue with both lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wgmesh.mesh.cli import UserError
from wgmesh.mesh.errors import ConfigIssue, MeshConfigError
from wgmesh.mesh.model import Mesh
from wgmesh.mesh.validation import load_mesh

ROOT = "mesh"


@dataclass(frozen=True)
class Description:
    """A parsed description file: the raw mapping ``load_mesh`` takes, and where each field path sits in the file."""

    path: Path
    raw: Any
    lines: dict[str, int] = field(default_factory=dict)
    issues: tuple[ConfigIssue, ...] = ()

    def line_of(self, field_path: str) -> int | None:
        """The line of ``field_path`` or of its closest enclosing field (a missing field points at its parent)."""
        candidate = field_path
        while candidate:
            if candidate in self.lines:
                return self.lines[candidate]
            cut = max(candidate.rfind("."), candidate.rfind("["))
            if cut <= 0:
                break
            candidate = candidate[:cut]
        return self.lines.get(ROOT)

    def locate(self, issue: ConfigIssue) -> str:
        """One issue as ``file:line: path: problem; fix``."""
        line = self.line_of(issue.path)
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        return f"{where}: {issue}"

    def _line_order(self, issue: ConfigIssue) -> tuple[bool, int]:
        line = self.line_of(issue.path)
        return (line is None, line or 0)

    def report(self, issues: Iterable[ConfigIssue]) -> str:
        """Every issue, one per line, under a header with the count: the CLI's message for an invalid mesh.

        In line order, as a person reads the file (the validator finds cross-peer problems after per-field ones);
        issues without a line come last, and issues on one line keep the validator's order.
        """
        issues = sorted(issues, key=self._line_order)
        lines = [f"{self.path}: the mesh description has {len(issues)} problem(s):"]
        lines += [f"  {self.locate(issue)}" for issue in issues]
        return "\n".join(lines)


def _walk(node: yaml.Node, path: str, lines: dict[str, int], issues: list[ConfigIssue]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}"
            line = key_node.start_mark.line + 1
            if key in seen:
                issues.append(
                    ConfigIssue(child, f"given twice (lines {seen[key]} and {line}; YAML would silently keep the last)", "keep one")
                )
                # The value YAML keeps is the last one: its lines replace the first one's.
                for stale in [known for known in lines if known == child or known.startswith((f"{child}.", f"{child}["))]:
                    del lines[stale]
            seen[key] = line
            lines[child] = line
            _walk(value_node, child, lines, issues)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, f"{path}[{index}]", lines, issues)


def load_description(path: str | Path) -> Description:
    """Read and parse a description file; :class:`UserError` (with file and line) when it cannot be read as YAML.

    A file whose only top-level key is ``mesh`` is unwrapped, so a description can also live under ``mesh:``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (give the path of a mesh description such as examples/mesh.yaml)") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a mesh description file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}): a mesh description is a YAML file") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        raw = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        context = exc.context or ""
        if context and exc.context_mark is not None and exc.context_mark is not mark:
            context += f" (from line {exc.context_mark.line + 1})"
        problem = ": ".join(part for part in (context, exc.problem) if part)
        raise UserError(f"{where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if node is None:
        raise UserError(f"{path}: the file is empty; see examples/mesh.yaml for a mesh description")
    if isinstance(raw, dict) and list(raw) == [ROOT] and isinstance(raw[ROOT], dict):
        raw = raw[ROOT]
        node = node.value[0][1]
    lines: dict[str, int] = {}
    issues: list[ConfigIssue] = []
    _walk(node, ROOT, lines, issues)
    return Description(path=path, raw=raw, lines=lines, issues=tuple(issues))


def merged_error(description: Description, error: MeshConfigError | None) -> MeshConfigError | None:
    """The description's own issues (duplicate keys) followed by the validator's, or ``None`` when there are none."""
    issues = list(description.issues) + (list(error.issues) if error is not None else [])
    return MeshConfigError(issues) if issues else None


def build_mesh(description: Description, *, pinned_addresses: Mapping[str, Iterable[str]] | None = None) -> Mesh:
    """Validate a description into a :class:`Mesh`; :class:`UserError` listing every issue with its line otherwise.

    The CLI prints the message and exits 1, so a user sees all problems of the file in one run.
    """
    error: MeshConfigError | None = None
    mesh: Mesh | None = None
    try:
        mesh = load_mesh(description.raw, path=ROOT, pinned_addresses=pinned_addresses)
    except MeshConfigError as exc:
        error = exc
    merged = merged_error(description, error)
    if merged is not None or mesh is None:
        raise UserError(description.report(merged.issues if merged is not None else ()))
    return mesh
