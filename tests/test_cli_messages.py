"""What ``check`` tells a person about a broken description: each hint true, said once, and in the file's order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wgmesh.mesh.cli import main
from wgmesh.mesh.validation import PEER_NAME

BROKEN = """\
network: 10.255.0.0/24
peers:
  - name: a
    endpoint: 203.0.113.1:51820
    subnets: [192.168.10.0/24]
  - name: b
    endpoint: 203.0.113.2
    subnets: [192.168.10.0/25]
  - name: this-name-is-too-long
    endpoint: 203.0.113.3:51820
    mtu: 5
"""


def check_errors(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    assert main(["check", str(path)]) == 1
    return capsys.readouterr().err.splitlines()[1:]


def test_problems_are_listed_in_line_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The overlap (a cross-peer check, found last) sits on line 8, between the endpoint (7) and the name (9)."""
    lines = [int(re.search(r"mesh\.yaml:(\d+):", line).group(1)) for line in check_errors(tmp_path, BROKEN, capsys)]
    assert lines == [7, 8, 9, 11]


def test_an_endpoint_without_a_port_says_how_to_write_it_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (message,) = [line for line in check_errors(tmp_path, BROKEN, capsys) if ".endpoint:" in line]
    assert "'203.0.113.2' has no port" in message
    assert message.count("host:port") == 1, message


@pytest.mark.parametrize("length", [15, 16])
def test_the_peer_name_hint_states_the_rule_that_is_enforced(length: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The hint's range is the regular expression's: 15 characters pass, 16 are refused with "1-15"."""
    name = "p" * length
    assert bool(PEER_NAME.match(name)) == (length <= 15)
    text = (
        f"network: 10.255.0.0/24\npeers:\n  - name: {name}\n    endpoint: 203.0.113.1:51820\n  - name: b\n    endpoint: 203.0.113.2:51820\n"
    )
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    code = main(["check", str(path)])
    err = capsys.readouterr().err
    if length <= 15:
        assert code == 0, err
    else:
        assert code == 1 and "use 1-15 lowercase letters" in err
