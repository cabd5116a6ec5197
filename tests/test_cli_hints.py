"""The hints the ``wgmesh`` command prints name it as the user typed it, so they can be pasted back as they are."""

from __future__ import annotations

import pytest

from wgmesh.cli.main import invocation


@pytest.mark.parametrize(
    ("argv0", "sudo_user", "expected"),
    [
        (".venv/bin/wgmesh", None, ".venv/bin/wgmesh"),
        ("/srv/wgmesh/.venv/bin/wgmesh", None, "/srv/wgmesh/.venv/bin/wgmesh"),
        (".venv/bin/wgmesh", "alice", "sudo .venv/bin/wgmesh"),
        ("pytest", None, "wgmesh"),
    ],
)
def test_invocation_is_what_was_typed(argv0: str, sudo_user: str | None, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", [argv0, "lab", "up"])
    monkeypatch.setattr("os.geteuid", lambda: 0)
    if sudo_user is None:
        monkeypatch.delenv("SUDO_USER", raising=False)
    else:
        monkeypatch.setenv("SUDO_USER", sudo_user)
    assert invocation() == expected
