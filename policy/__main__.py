"""wgmesh's policy pack: ``pulumi preview --policy-pack policy`` (see docs/policy.md).

Pulumi runs this file in the pack's own virtualenv (``requirements.txt``); it serves the policies to the engine
and never returns. The rules themselves live in ``wgmesh_rules`` (pure) and their Pulumi wrapping in
``wgmesh_pack``, both importable by tests.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the rules beside this file, however Pulumi starts it

from pulumi_policy import EnforcementLevel, PolicyPack
from wgmesh_pack import PACK_NAME, policies

PolicyPack(
    name=PACK_NAME,
    policies=policies(),
    enforcement_level=EnforcementLevel.MANDATORY,
    description="wgmesh safety rules: no SSH/WireGuard from anywhere, IMDSv2, encrypted volumes, "
    "source/dest check off only on mesh peers, no secrets in user data, tunnel network outside every VPC",
)
