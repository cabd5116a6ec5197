# ruff: noqa: UP045  (Pulumi's schema analyzer accepts Optional[X], never X | None: see the module doc)
"""The ``wgmesh`` component package: :class:`wgmesh.components.mesh_api.Mesh` for every Pulumi language (``wgmesh:index:Mesh``).

Pulumi's Python component provider host (``pulumi.provider.experimental``) serves the component and infers the
schema from this module's annotations, so this module is written for its analyzer: no ``from __future__ import
annotations``, ``Optional`` rather than unions, lists rather than tuples, TypedDicts for the args. The schema is the
stack config's ``wgmesh:mesh`` in camelCase: a flat peer list whose ``kind`` (``aws`` or ``external``) stands in for
the Python API's union, the SSH keys as secret inputs, and no AWS type (the mesh makes one provider per region, with
the description's credentials; a program in another language passes none). Outputs are maps of plain values.

Run as ``python -m wgmesh.components.provider`` (what ``provider/pulumi-resource-wgmesh`` does). Upstream snags, each worked
around in one place marked ``UPSTREAM`` with a test in ``tests/test_provider.py`` that fails once upstream fixes it.
"""

import math
import re
from typing import Any, Optional, Required, TypedDict

import pulumi

from wgmesh.components.mesh_api import Mesh as MeshComponentApi
from wgmesh.components.program import relax_garbage_collector
from wgmesh.mesh.errors import ConfigIssue, MeshConfigError

PACKAGE = "wgmesh"
SECRET_INPUTS = ("sshPrivateKey", "sshPrivateKeys")


class AwsCredentials(TypedDict, total=False):
    """Where a region's or partition's AWS provider takes its credentials (no secret here: keys stay in profiles)."""

    profile: Optional[str]
    role_arn: Optional[str]
    external_id: Optional[str]
    session_name: Optional[str]


class Peer(TypedDict, total=False):
    """One mesh member: ``kind: aws`` (created by the mesh) or ``kind: external`` (reached over SSH). The fields are
    those of a peer in the ``wgmesh:mesh`` stack config (docs/stack.md), in camelCase."""

    name: Required[str]
    kind: Required[str]
    address: Optional[str]
    endpoint: Optional[pulumi.Input[str]]
    listen_port: Optional[int]
    subnets: Optional[list[str]]
    keepalive: Optional[int]
    mtu: Optional[int]
    egress_interface: Optional[str]
    nat: Optional[bool]
    post_up: Optional[list[str]]
    post_down: Optional[list[str]]
    dns: Optional[list[str]]
    table: Optional[str]
    relay: Optional[str]
    relay_allowed: Optional[bool]
    key_version: Optional[int]
    region: Optional[str]
    vpc_cidr: Optional[str]
    subnet_cidr: Optional[str]
    availability_zone: Optional[str]
    instance_type: Optional[str]
    ssh_user: Optional[str]
    key_name: Optional[pulumi.Input[str]]
    ssh_public_key: Optional[pulumi.Input[str]]
    ami_id: Optional[pulumi.Input[str]]
    ami_owner: Optional[str]
    ami_name_filter: Optional[str]
    root_volume_size: Optional[int]
    rebuild: Optional[bool]
    ssh_host: Optional[pulumi.Input[str]]
    ssh_port: Optional[int]
    source_cidrs: Optional[list[str]]
    ssh_host_key: Optional[pulumi.Input[str]]


class MeshArgs(TypedDict, total=False):
    """The mesh: the ``wgmesh:mesh`` stack config's fields in camelCase, the SSH keys, and what to export."""

    peers: Required[list[Peer]]
    network: Optional[str]
    interface: Optional[str]
    listen_port: Optional[int]
    keepalive: Optional[int]
    mtu: Optional[int]
    egress_interface: Optional[str]
    nat: Optional[bool]
    nat_mark: Optional[int]
    relay_allowed: Optional[bool]
    admin_cidrs: Optional[list[str]]
    tags: Optional[dict[str, str]]
    aws_quotas: Optional[dict[str, int]]
    route_summaries: Optional[list[str]]
    allowed_account_ids: Optional[list[str]]
    aws_credentials: Optional[dict[str, AwsCredentials]]
    ssh_private_key: Optional[pulumi.Input[str]]
    """The SSH private key that logs in to every peer (secret)."""
    ssh_private_keys: Optional[dict[str, pulumi.Input[str]]]
    """Per peer name, a key overriding sshPrivateKey (secret)."""
    verify: Optional[bool]
    """Check every handshake and ping after the installs (default true)."""
    export_configs: Optional[bool]
    """Export every peer's wg-quick config (a secret output; default false)."""
    default_tags: Optional[dict[str, str]]
    """Tags on every AWS resource, besides ``tags``."""


class Mesh(MeshComponentApi):
    """A WireGuard full mesh of AWS peers it creates and external hosts it reaches over SSH, from one description."""

    public_keys: pulumi.Output[dict[str, str]]
    """Each peer's WireGuard public key."""
    endpoints: pulumi.Output[dict[str, str]]
    """``host:port`` of each peer that has an endpoint."""
    tunnel_addresses: pulumi.Output[dict[str, list[str]]]
    """Each peer's tunnel addresses."""
    config_digests: pulumi.Output[dict[str, str]]
    """The SHA-256 of each peer's config."""
    verification: pulumi.Output[dict[str, Any]]
    """Per peer, the handshakes and pings it checked (camelCase keys)."""
    configs: Optional[pulumi.Output[dict[str, str]]]
    """Each peer's wg-quick config (a secret), only with exportConfigs."""

    def __init__(self, name: str, args: MeshArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        raw = dict(args)
        keys = {key: raw.pop(key, None) for key in ("ssh_private_key", "ssh_private_keys", "verify", "export_configs", "default_tags")}
        description = plain_numbers(raw)
        try:
            super().__init__(
                name,
                description,
                ssh_private_key=pulumi.Output.secret(keys["ssh_private_key"]) if keys["ssh_private_key"] is not None else None,
                ssh_private_keys={peer: pulumi.Output.secret(key) for peer, key in (keys["ssh_private_keys"] or {}).items()},
                verify=keys["verify"] is not False,
                default_tags=keys["default_tags"],
                opts=opts,
            )
        except MeshConfigError as exc:
            raise MeshConfigError([camel_issue(issue) for issue in exc.issues]) from None
        self.tunnel_addresses = pulumi.Output.from_input(self.tunnel_addresses)
        self.verification = self.verification.apply(camel_keys)
        if not keys["export_configs"]:
            self.configs = None  # type: ignore[assignment]


# --- UPSTREAM workarounds: each one place, each with a test in tests/test_provider.py that tells when it can go ------


def plain_numbers(value: Any) -> Any:
    """UPSTREAM: integers arrive as floats (``51820.0``): the SDK converts a top-level integer input, then overwrites
    the conversion with the raw value (``component.py``, ``map_input_properties``). Whole floats become ints, at any
    depth; args already arrive as plain dicts, which is what the description is."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    if isinstance(value, dict):
        return {key: plain_numbers(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [plain_numbers(item) for item in value]
    return value


def camel_keys(value: Any) -> Any:
    """UPSTREAM: the keys of a nested map in an output keep their Python spelling (``map_complex_output`` renames only
    declared types' properties): the verification's snake_case keys become camelCase here. Peer names (map keys
    that are not identifiers with an underscore) are unchanged."""
    if isinstance(value, dict):
        return {camel(key) if isinstance(key, str) else key: camel_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [camel_keys(item) for item in value]
    return value


# --- Errors in the consumer's spelling --------------------------------------------------------------------------------

MESH_PATH = re.compile(r"\bmesh\.(?=[a-z])")  # wgmesh.components.mesh_api validates under the path "mesh"
SNAKE = re.compile(r"\b([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b")


def camel(text: str) -> str:
    head, *rest = text.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_text(text: str) -> str:
    """Every snake_case identifier in ``text`` in camelCase (field names in paths, problems and fixes)."""
    return SNAKE.sub(lambda match: camel(match.group(1)), text)


def camel_issue(issue: ConfigIssue) -> ConfigIssue:
    """A validation issue as the consumer wrote the field: ``peers[1].vpcCidr`` (the component's args, no ``mesh.``)."""

    def spelled(text: str) -> str:
        return camel_text(MESH_PATH.sub("", text))

    return ConfigIssue(spelled(issue.path), spelled(issue.problem), spelled(issue.fix))


def schema_secrets(schema: dict[str, Any]) -> dict[str, Any]:
    """UPSTREAM: the analyzer has no way to mark an input secret: the SSH keys are marked in the schema here."""
    resource = schema.get("resources", {}).get(f"{PACKAGE}:index:Mesh", {})
    for key in SECRET_INPUTS:
        if key in resource.get("inputProperties", {}):
            resource["inputProperties"][key]["secret"] = True
    configs = resource.get("properties", {}).get("configs")
    if configs is not None:
        configs["secret"] = True
    return schema


def main() -> None:
    """Serve the package (the engine starts this through ``provider/pulumi-resource-wgmesh``)."""
    import json

    from pulumi.provider.experimental import component as component_module
    from pulumi.provider.experimental.host import component_provider_host

    original = component_module.generate_schema

    def generate_schema(*args: Any, **kwargs: Any) -> Any:
        schema = original(*args, **kwargs)
        patched = schema_secrets(schema.to_json())

        class Patched:
            def to_json(self) -> dict[str, Any]:
                return patched

        json.dumps(patched)
        return Patched()

    component_module.generate_schema = generate_schema  # type: ignore[assignment]
    relax_garbage_collector()  # the provider process registers the mesh's resources as the program does
    component_provider_host([Mesh], PACKAGE, version=package_version())


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wgmesh")
    except PackageNotFoundError:
        return "0.0.0"


if __name__ == "__main__":
    main()
