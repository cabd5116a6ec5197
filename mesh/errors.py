"""Errors raised for bad mesh descriptions.

Every problem found in a mesh description is collected as a :class:`ConfigIssue` (field path, what is wrong,
what to do) and all of them are raised together in one :class:`MeshConfigError`, so that a user fixes a broken
stack config in one round instead of one error per `pulumi up`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a mesh description, located by a field path such as ``mesh.peers[1].subnets[0]``."""

    path: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}; {self.fix}"


class MeshConfigError(ValueError):
    """Raised with every issue of a mesh description at once, before anything is created."""

    def __init__(self, issues: list[ConfigIssue] | tuple[ConfigIssue, ...]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        lines = [f"the mesh description has {len(self.issues)} problem(s):"]
        lines += [f"  - {issue}" for issue in self.issues]
        super().__init__("\n".join(lines))

    def paths(self) -> list[str]:
        """The field paths named by the issues, in the order they were found."""
        return [issue.path for issue in self.issues]
