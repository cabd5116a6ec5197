"""Test provider ``random``: ``RandomBytes`` and ``RandomPassword`` as pulumi-random 4.x (terraform-provider-random,
bridged) has them.

Run as ``python -m testproviders.random <engine address>`` (the ``pulumi-resource-random`` shim does).

* the bytes and characters come from the OS's CSPRNG (:mod:`secrets`) once, at create, and then live in the state;
* every input is ``RequiresReplace`` upstream: any change of ``keepers``, ``length`` or a character-set option
  (or a value not known yet, in a preview) replaces the resource; inputs are compared with their defaults filled
  in, and an ``overrideSpecial`` going from "" to unset is no change (``RequiresReplaceUnlessEmptyStringToNull``);
* IDs as the official provider sets them: RandomBytes' ID is its base64 value (pulumi-random's
  ``computeRandomBytesID``: yes, the value leaks into the ID), RandomPassword's is the constant ``"none"``;
* outputs: every input with the defaults the provider computes (``upper``/``lower``/``numeric``/``number``/
  ``special`` true, ``min*`` 0), plus ``base64`` and ``hex`` (bytes) or ``result``, ``bcryptHash`` and ``id``
  (password);
* RandomPassword is terraform-provider-random's ``CreateString``: first ``minNumeric`` digits, ``minLower``
  lower-case, ``minUpper`` upper-case and ``minSpecial`` special characters (each drawn even when its class is
  disabled, as upstream does), then the rest of ``length`` from every enabled class, then shuffled; ``special``
  characters are ``!@#$%&*()-_=+[]{}<>:?`` unless ``overrideSpecial`` is set (and not empty).
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from testproviders import server
from testproviders.server import UNKNOWN, Context, ProviderError, Resource, has_unknown

try:  # bcryptHash is computed only where the bcrypt module is installed (it is no dependency of ours)
    import bcrypt
except ImportError:  # pragma: no cover - depends on the machine
    bcrypt = None

NAME = "random"
VERSION = "4.21.4"  # pulumi_random's _utilities.get_version() asks the engine for this version
NUMERIC, LOWER, UPPER = "0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SPECIAL = "!@#$%&*()-_=+[]{}<>:?"
PASSWORD_ID = "none"
BYTES_INPUTS = frozenset({"keepers", "length"})
PASSWORD_INPUTS = frozenset(
    {
        "keepers",
        "length",
        "upper",
        "lower",
        "numeric",
        "number",
        "special",
        "minUpper",
        "minLower",
        "minNumeric",
        "minSpecial",
        "overrideSpecial",
    }
)
PASSWORD_DEFAULTS = {
    "upper": True,
    "lower": True,
    "numeric": True,
    "special": True,
    "minUpper": 0,
    "minLower": 0,
    "minNumeric": 0,
    "minSpecial": 0,
}
MIN_FIELDS = ("minUpper", "minLower", "minNumeric", "minSpecial")


def _known(value: Any) -> bool:
    return not has_unknown(value)


def _integer(inputs: dict[str, Any], name: str, failures: list[tuple[str, str]]) -> None:
    value = inputs.get(name)
    if value is None or not _known(value):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        failures.append((name, f"{name}: expected a whole number, got {value!r}"))
        return
    inputs[name] = int(value)


class _Random(Resource):
    def replaces_on(self, key: str, old: Any, new: Any) -> bool:
        return True  # every attribute is RequiresReplace upstream

    def update(self, ctx: Context, resource_id: str, state: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        # Only reached with no replacing change (nothing else is updatable): the stored value stays.
        return {**state, **self.normalize(news)}


class RandomBytes(_Random):
    token = "random:index/randomBytes:RandomBytes"
    inputs = BYTES_INPUTS
    required = frozenset({"length"})

    def check(self, news: dict[str, Any], olds: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        inputs, failures = super().check(news, olds)
        _integer(inputs, "length", failures)
        length = inputs.get("length")
        if isinstance(length, int) and length < 1:
            failures.append(("length", f"Attribute length value must be at least 1, got: {length}"))
        return inputs, failures

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        data = secrets.token_bytes(int(inputs["length"]))
        encoded = base64.b64encode(data).decode()
        outputs = {**self.normalize(inputs), "base64": encoded, "hex": data.hex()}
        return encoded, outputs


class RandomPassword(_Random):
    token = "random:index/randomPassword:RandomPassword"
    inputs = PASSWORD_INPUTS
    required = frozenset({"length"})

    def normalize(self, inputs: dict[str, Any]) -> dict[str, Any]:
        values = {**PASSWORD_DEFAULTS, **super().normalize(inputs)}
        # number is numeric's deprecated twin: either one set decides both (NumberNumericAttributePlanModifier).
        values["numeric"] = inputs.get("numeric", inputs.get("number", True))
        values["number"] = inputs.get("number", values["numeric"])
        if values.get("overrideSpecial") == "":
            del values["overrideSpecial"]
        return values

    def check(self, news: dict[str, Any], olds: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        inputs, failures = super().check(news, olds)
        for name in ("length", *MIN_FIELDS):
            _integer(inputs, name, failures)
        values = self.normalize(inputs)
        length = values.get("length")
        if isinstance(length, int):
            if length < 1:
                failures.append(("length", f"Attribute length value must be at least 1, got: {length}"))
            mins = [values[name] for name in MIN_FIELDS]
            if all(isinstance(value, int) for value in mins) and length < sum(mins):
                failures.append(
                    (
                        "length",
                        f"Attribute length value must be at least sum of min_upper, min_lower, min_numeric, min_special "
                        f"({sum(mins)}), got: {length}",
                    )
                )
        classes = [values[name] for name in ("upper", "lower", "numeric", "special")]
        if all(value is False for value in classes):
            failures.append(("numeric", "At least one attribute out of [special upper lower numeric] must be specified as true"))
        return inputs, failures

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        values = self.normalize(inputs)
        if any(value == UNKNOWN for value in values.values()):
            raise ProviderError("cannot create a password from values not known yet")
        result = create_string(values)
        outputs = {**values, "result": result, "id": PASSWORD_ID}
        if bcrypt is not None:
            outputs["bcryptHash"] = bcrypt.hashpw(result.encode(), bcrypt.gensalt()).decode()
        # else: no bcryptHash output (the bcrypt module is not installed here, and we add no dependency for it).
        return PASSWORD_ID, outputs


def create_string(values: dict[str, Any]) -> str:
    """terraform-provider-random's ``CreateString`` over ``values`` (defaults already filled in)."""
    special = values.get("overrideSpecial") or SPECIAL
    pool = "".join(
        chars
        for enabled, chars in (
            (values["upper"], UPPER),
            (values["lower"], LOWER),
            (values["numeric"], NUMERIC),
            (values["special"], special),
        )
        if enabled
    )
    if not pool:
        raise ProviderError("the character set specified is empty")
    result = []
    for chars, count in (
        (NUMERIC, values["minNumeric"]),
        (LOWER, values["minLower"]),
        (UPPER, values["minUpper"]),
        (special, values["minSpecial"]),
    ):
        result += [secrets.choice(chars) for _ in range(int(count))]
    result += [secrets.choice(pool) for _ in range(int(values["length"]) - len(result))]
    # A uniform shuffle from the CSPRNG (upstream sorts by random bytes: the same distribution, near enough).
    for index in range(len(result) - 1, 0, -1):
        other = secrets.randbelow(index + 1)
        result[index], result[other] = result[other], result[index]
    return "".join(result)


def resources() -> list[Resource]:
    return [RandomBytes(), RandomPassword()]


if __name__ == "__main__":
    server.main(NAME, VERSION, resources)
