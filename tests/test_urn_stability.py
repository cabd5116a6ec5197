"""A stack made by wgmesh's program before the ``Mesh`` component (issue 19) keeps every resource after it.

``tests/snapshots/urns-before.json`` holds what the program registered at the branch point (``python -m
tests.urn_recorder`` in that checkout): each resource's URN, provider and a digest of its inputs, for the example AWS
stack and a mixed one (AWS, external, one behind NAT). Today's program registers under the mocks again, and each old
resource must be exactly one new resource, by URN or by an alias (given, or inherited from a parent's alias, as the
engine computes them), with the same provider and, but for the rendered configs and scripts (:data:`RENDERED`), the
same inputs: the engine then shows no create, delete or replace. The lab proves the same through the real engine
for external peers (``tests/test_yaml_example.py``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.program_harness import REPO
from tests.urn_recorder import record, stacks

SNAPSHOT = REPO / "tests" / "snapshots" / "urns-before.json"
# Resources whose inputs are the rendered configs and host scripts: they change whenever the configs or scripts do
# (this release renders an MTU and installs its own firewall chains, issue 17), which is an update of the install and
# verify commands in place (they have no triggers) and, by design, a new configs barrier. Every other resource (the
# AWS graph, the keys' RandomPasswords, the host-key scans, the components) must keep its inputs exactly.
RENDERED = frozenset({"command:remote:Command", "pulumi:index:Stash"})
STACK_TYPE = "pulumi:pulumi:Stack"


class EngineUrns:
    """URNs as the engine forms them (the mock monitor's differ: it keeps only the last parent type)."""

    def __init__(self, stack: str, project: str = "wgmesh") -> None:
        self.prefix = f"urn:pulumi:{stack}::{project}::"
        self.by_mock: dict[str, str] = {}

    def make(self, parent: str | None, typ: str, name: str) -> str:
        """``parent`` is an engine URN (None or the stack's: a root resource)."""
        qualified = typ
        if parent and self.qualified(parent) != STACK_TYPE:
            qualified = f"{self.qualified(parent)}${typ}"
        return f"{self.prefix}{qualified}::{name}"

    @staticmethod
    def qualified(urn: str) -> str:
        return urn.split("::")[2]

    @staticmethod
    def name(urn: str) -> str:
        return urn.split("::", 3)[3]

    def convert(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records with engine URNs, their parents' and every alias (given and inherited) resolved."""
        out: list[dict[str, Any]] = []
        aliases_of: dict[str, list[str]] = {}
        for item in records:
            parent = self.by_mock.get(item["parent"]) if item["parent"] else None
            if item["parent"] and parent is None:  # the stack itself
                parent = self.prefix + STACK_TYPE + "::stack"
            urn = self.make(parent, item["type"], item["name"])
            self.by_mock[item["urn"]] = urn
            aliases: list[str] = []
            for alias in item["aliases"]:
                spec = alias.get("spec")
                if spec is None:
                    aliases.append(alias["urn"])
                    continue
                alias_parent = None if spec.get("noParent") else (self.by_mock.get(spec.get("parentUrn", ""), parent))
                aliases.append(self.make(alias_parent, spec.get("type") or item["type"], spec.get("name") or item["name"]))
            parent_name = self.name(parent) if parent else ""
            for parent_alias in aliases_of.get(parent or "", []):
                child = item["name"]
                if parent_name and child.startswith(parent_name):
                    child = self.name(parent_alias) + child[len(parent_name) :]
                aliases.append(self.make(parent_alias, item["type"], child))
            aliases_of[urn] = aliases
            provider = item["provider"].split("::id", 1)[0].rsplit("::", 1)[-1] if item["provider"] else ""
            out.append({**item, "urn": urn, "aliases": aliases, "provider": provider})
        return out


@pytest.mark.parametrize("stack", ["zhy", "mixed"])
def test_a_stack_made_by_the_program_before_mesh_keeps_every_resource(stack: str) -> None:
    before = EngineUrns("zhy").convert(json.loads(SNAPSHOT.read_text())[stack])
    after = EngineUrns("zhy").convert(record(stacks()[stack]))
    new_by_urn: dict[str, dict[str, Any]] = {}
    for resource in after:
        for urn in [resource["urn"], *resource["aliases"]]:
            new_by_urn.setdefault(urn, resource)
    problems = []
    matched: set[str] = set()
    for old in before:
        new = new_by_urn.get(old["urn"])
        if new is None:
            problems.append(f"{old['urn']}: no resource or alias (it would be deleted)")
            continue
        matched.add(new["urn"])
        if new["inputs"] != old["inputs"] and new["type"] not in RENDERED:
            problems.append(f"{old['urn']} -> {new['urn']}: inputs differ (an update or a replacement)")
        if new["provider"] != old["provider"]:
            problems.append(f"{old['urn']} -> {new['urn']}: provider {old['provider']} -> {new['provider']}")
    created = [resource["urn"] for resource in after if resource["urn"] not in matched]
    assert not problems, "\n".join(problems)
    assert not created, f"resources the old stack does not have (they would be created): {created}"
    moved = sum(1 for old in before if old["urn"] not in {resource["urn"] for resource in after})
    print(f"{stack}: {len(before)} resources kept, {moved} of them moved under the mesh with aliases")
