"""The Pulumi side of the policy pack: :mod:`wgmesh_rules` wrapped into ``pulumi_policy`` policies.

Kept apart from ``__main__.py`` (which starts the analyzer server and never returns) so that tests can build the
real policies and drive them with real ``ResourceValidationArgs``/``StackValidationArgs``.
"""

from __future__ import annotations

from collections.abc import Callable

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError
from wgmesh_rules import RULES, Rule, tunnel_networks

PACK_NAME = "wgmesh-safety"
UNKNOWN_REASON = "depends on values known only once dependencies exist; it is checked again during `pulumi up`"


def _resource_validate(rule: Rule) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        try:
            messages = rule.check(args, args.get_config() or {})
        except UnknownValueError:
            # During a first preview, e.g. a security group rule whose CIDRs are other peers' Elastic IPs.
            args.not_applicable(UNKNOWN_REASON)
            return
        for message in messages:
            report_violation(message, None)

    return validate


def _stack_validate(rule: Rule) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        config = args.get_config() or {}
        try:
            if rule.name == "tunnel-network-outside-vpcs" and not tunnel_networks(args.resources, config):
                args.not_applicable("no tunnel network known: the stack has no wgmesh:index:Mesh and tunnelNetworks is not configured")
                return
            violations = rule.check(args.resources, config)
        except UnknownValueError:
            args.not_applicable(UNKNOWN_REASON)
            return
        for violation in violations:
            report_violation(violation.message, violation.urn)

    return validate


def policies(enforcement_level: EnforcementLevel = EnforcementLevel.MANDATORY) -> list[Policy]:
    """One policy per rule, mandatory by default (a violation stops `pulumi preview`/`up`)."""
    built: list[Policy] = []
    for rule in RULES:
        schema = PolicyConfigSchema(properties={key: dict(value) for key, value in rule.config.items()}) if rule.config else None
        policy = StackValidationPolicy if rule.stack else ResourceValidationPolicy
        validate = _stack_validate(rule) if rule.stack else _resource_validate(rule)
        built.append(
            policy(
                name=rule.name,
                description=rule.description,
                validate=validate,
                enforcement_level=enforcement_level,
                config_schema=schema,
            )
        )
    return built
