"""Record what the program registers under mocks: each resource's URN, aliases, provider and a digest of its inputs.

``python -m tests.urn_recorder`` prints the records of :data:`STACKS` as JSON. Run in a checkout of an earlier wgmesh
(this file copied in), it is how ``tests/snapshots/urns.json`` was made: the branch point of issue 19, before the
``Mesh`` component. ``tests/test_urn_stability.py`` compares today's program with it. Self-contained on purpose: it
must run on the old tree too.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any
from unittest import mock

from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks

from tests.program_harness import REPO, run_program, stack_config, synthetic_stack

SECRET_KEY = "4dabf18193072939515e22adb298388d"


def stacks() -> dict[str, dict[str, Any]]:
    """The stacks compared: the example AWS stack, and a synthetic one of AWS and external peers (one behind NAT)."""
    mixed = synthetic_stack(6)  # p2 and p5 external
    mixed_mesh = json.loads(mixed["wgmesh:mesh"]) if isinstance(mixed["wgmesh:mesh"], str) else mixed["wgmesh:mesh"]
    mixed_mesh["peers"][-1].pop("endpoint", None)  # an external peer behind NAT
    mixed_mesh["peers"][-1]["source_cidrs"] = ["198.51.100.99/32"]
    mixed = {**mixed, "wgmesh:mesh": mixed_mesh}
    return {"zhy": {**stack_config(REPO / "Pulumi.zhy.yaml"), "wgmesh:exportConfigs": "true"}, "mixed": mixed}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SECRET_KEY) == "1b47061264138c4ac30d75fd1eb44270":
            return {"secret": _plain(value.get("value"))}
        return {key: _plain(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def record(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every resource the program registers with ``config``, in registration order."""
    records: list[dict[str, Any]] = []
    original = pulumi_mocks.MockMonitor.RegisterResource

    def recording(self: Any, request: Any) -> Any:
        response = original(self, request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = _plain(json_format.MessageToDict(request.object))
            # With alias specs (the mock monitor, like the engine, supports them) each is {"spec": {...}} or {"urn": ...}.
            specs = [json_format.MessageToDict(alias, preserving_proto_field_name=True) for alias in request.aliases]
            records.append(
                {
                    "urn": response.urn,
                    "parent": request.parent,
                    "name": request.name,
                    "type": request.type,
                    "provider": request.provider.split("::", 4)[-1] if request.provider else "",
                    "aliases": specs,
                    "inputs": hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest(),
                }
            )
        return response

    with mock.patch.object(pulumi_mocks.MockMonitor, "RegisterResource", recording):
        run_program(config)
    return records


if __name__ == "__main__":
    json.dump({name: record(config) for name, config in stacks().items()}, sys.stdout, indent=1, sort_keys=True)
    print()
