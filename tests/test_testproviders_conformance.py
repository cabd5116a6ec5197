"""The test providers implement every property the program passes: fail as soon as components/ uses one they don't.

The program's uses are read from components/*.py with an AST walk: every call that resolves (through the module's
imports) to a class of the installed ``pulumi_command`` or ``pulumi_random`` SDK (``command.remote.Command(``,
``command.local.Command(``, ``command.remote.ConnectionArgs(``, ``random.RandomBytes(``, ``random.RandomPassword(``,
or whatever the program switches to), with its keyword arguments. Each keyword is mapped to its wire name with
the SDK's own table (the ``@pulumi.getter(name=...)`` of the resource's ``*Args`` class) and must be in the set
the test provider module declares for that resource type (``Resource.inputs``) or input type
(:data:`testproviders.command.ARGS_TYPES`).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest

from testproviders import command as command_provider
from testproviders import random as random_provider

REPO = Path(__file__).resolve().parent.parent
SDKS = ("pulumi_command", "pulumi_random")
NOT_PROPERTIES = {"resource_name", "opts", "__props__", "__self__"}
PROVIDERS = {resource.token: resource for module in (command_provider, random_provider) for resource in module.resources()}


@dataclass(frozen=True)
class Use:
    where: str  # file:line
    target: str  # the SDK class, dotted
    keywords: tuple[str, ...]  # snake_case, as the program passes them; "**" for a **mapping


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> full dotted name, for the SDK modules and names the source imports."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for name in node.names:
                aliases[name.asname or name.name.split(".")[0]] = name.name if name.asname else name.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for name in node.names:
                aliases[name.asname or name.name] = f"{node.module}.{name.name}"
    return aliases


def _resolve(dotted: str) -> Any:
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for part in parts[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def sdk_uses(source: str, filename: str = "<source>") -> list[Use]:
    """Every call of an SDK class in ``source``, with its keyword arguments."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    uses = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        dotted = _dotted(node.func)
        if dotted is None:
            continue
        head, _, rest = dotted.partition(".")
        full = aliases.get(head)
        if full is None or full.split(".")[0] not in SDKS:
            continue
        target = f"{full}.{rest}" if rest else full
        if not inspect.isclass(_resolve(target)):
            continue
        keywords = tuple(keyword.arg or "**" for keyword in node.keywords)
        uses.append(Use(f"{filename}:{node.lineno}", target, keywords))
    return uses


def wire_names(args_class: type) -> dict[str, str]:
    """snake_case -> camelCase for an SDK ``*Args`` class, from its own ``@pulumi.getter`` names."""
    names = {}
    for klass in reversed(args_class.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, property) and value.fget is not None:
                names[name] = getattr(value.fget, "_pulumi_name", name)
    return names


def _resource_token(resource_class: type) -> str:
    tokens = re.findall(r"""super\([^)]*\)\.__init__\(\s*['"]([\w:/.-]+)['"]""", inspect.getsource(resource_class))
    assert len(tokens) == 1, f"cannot find the type token of {resource_class}"
    return tokens[0]


def problems(use: Use) -> list[str]:
    """What the test providers lack for ``use`` (empty: all implemented)."""
    cls = _resolve(use.target)
    if "**" in use.keywords:
        return [f"{use.where}: {use.target}(**...): pass properties by name, so this test can check them"]
    if issubclass(cls, pulumi.CustomResource):
        token = _resource_token(cls)
        resource = PROVIDERS.get(token)
        if resource is None:
            return [f"{use.where}: {use.target} ({token}): no test provider implements this resource type"]
        args_class = getattr(sys.modules[cls.__module__], f"{cls.__name__}Args")
        implemented, what = resource.inputs, token
    else:
        args_class = cls
        implemented = command_provider.ARGS_TYPES.get(f"{use.target.split('.')[0]}:{cls.__name__}")
        what = cls.__name__
        if implemented is None:
            return [f"{use.where}: {use.target}: no test provider declares this input type"]
    names = wire_names(args_class)
    missing = []
    for keyword in use.keywords:
        if keyword in NOT_PROPERTIES:
            continue
        wire = names.get(keyword)
        if wire is None:
            missing.append(f"{use.where}: {use.target}({keyword}=...): not a property of the installed SDK's {args_class.__name__}")
        elif wire not in implemented:
            missing.append(f"{use.where}: {use.target}({keyword}=...): the test provider does not implement {what}.{wire}")
    return missing


def program_uses() -> list[Use]:
    uses = []
    for path in sorted((REPO / "components").glob("*.py")):
        uses += sdk_uses(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    return uses


# ------------------------------------------------------------------------------------------------------ tests
def test_program_uses_only_what_the_test_providers_implement() -> None:
    uses = program_uses()
    kinds = {use.target.split(".")[-1] for use in uses}
    # Not vacuous: the walk finds the program's commands, their connection and its random seed.
    assert {"Command", "ConnectionArgs"} <= kinds and any(kind.startswith("Random") for kind in kinds), kinds
    assert [problem for use in uses for problem in problems(use)] == []


def test_implemented_sets_are_real_sdk_properties() -> None:
    """No invented names: each implemented input is a property of the SDK's Args class for that type."""
    import pulumi_command
    import pulumi_random

    pairs = [
        (pulumi_command.local.CommandArgs, command_provider.LOCAL_INPUTS),
        (pulumi_command.remote.CommandArgs, command_provider.REMOTE_INPUTS),
        (pulumi_command.remote.ConnectionArgs, command_provider.CONNECTION_INPUTS),
        (pulumi_random.RandomBytesArgs, random_provider.BYTES_INPUTS),
        (pulumi_random.RandomPasswordArgs, random_provider.PASSWORD_INPUTS),
    ]
    for args_class, implemented in pairs:
        assert implemented <= set(wire_names(args_class).values()), (args_class, implemented - set(wire_names(args_class).values()))
    assert wire_names(pulumi_command.remote.ConnectionArgs)["private_key"] == "privateKey"
    assert wire_names(pulumi_random.RandomPasswordArgs)["override_special"] == "overrideSpecial"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import pulumi_random as random\nrandom.RandomPassword('p', length=32, min_upper=2, keepers={})\n", []),
        ("from pulumi_random import RandomBytes\nRandomBytes('b', length=32)\n", []),
        (
            "import pulumi_command as command\ncommand.remote.ConnectionArgs(host='h', private_key_password='x')\n",
            ["the test provider does not implement ConnectionArgs.privateKeyPassword"],
        ),
        (
            "from pulumi_command import local\nlocal.Command('c', create='x', asset_paths=['*'])\n",
            ["the test provider does not implement command:local:Command.assetPaths"],
        ),
        ("import pulumi_random\npulumi_random.RandomUuid('u')\n", ["no test provider implements this resource type"]),
        ("import pulumi_command as c\nc.local.Command('c', **kwargs)\n", ["pass properties by name"]),
    ],
)
def test_the_check_catches_what_is_missing(source: str, expected: list[str]) -> None:
    """The walk resolves the import styles the program might use, and reports what a provider lacks."""
    uses = sdk_uses(source)
    assert len(uses) == 1
    found = problems(uses[0])
    assert len(found) == len(expected) and all(text in problem for text, problem in zip(expected, found, strict=True)), found
