"""The test providers (testproviders/) over real gRPC, as the engine drives them: the shim scripts are started, the
port read from their stdout, and Check/Diff/Create/Update/Delete/Read called with a ResourceProviderStub. A small
fake engine (``pulumirpc.Engine``) records what they log.

Remote commands run against a throwaway sshd on 127.0.0.1 (root and sshd needed; the test skips with the reason
otherwise; CI runs as root with sshd installed).
"""

from __future__ import annotations

import base64
import contextlib
import os
import selectors
import shutil
import signal
import socket
import string
import subprocess
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc, provider_pb2, provider_pb2_grpc

from testproviders import install_shims
from testproviders.server import UNKNOWN

START_SECONDS = 30.0
CALL_SECONDS = 60.0
DIFF = provider_pb2.DiffResponse


# --------------------------------------------------------------------------------------------------- harness
class FakeEngine(engine_pb2_grpc.EngineServicer):
    """Records the Log calls a provider makes."""

    def __init__(self) -> None:
        self.logs: list[engine_pb2.LogRequest] = []

    def Log(self, request: engine_pb2.LogRequest, context: grpc.ServicerContext) -> empty_pb2.Empty:
        self.logs.append(request)
        return empty_pb2.Empty()

    def messages(self, urn: str | None = None) -> list[str]:
        return [log.message for log in self.logs if urn is None or log.urn == urn]


@dataclass
class Plugin:
    stub: provider_pb2_grpc.ResourceProviderStub
    process: subprocess.Popen
    engine: FakeEngine
    tmpdir: Path
    project: str = "proj"
    counter: list[int] = field(default_factory=lambda: [0])

    def urn(self, token: str, name: str) -> str:
        return f"urn:pulumi:test::{self.project}::{token}::{name}"

    def check(self, urn: str, news: dict[str, Any], olds: dict[str, Any] | None = None) -> provider_pb2.CheckResponse:
        return self.stub.Check(
            provider_pb2.CheckRequest(urn=urn, olds=_struct(olds or {}), news=_struct(news), type=_token(urn)), timeout=CALL_SECONDS
        )

    def checked(self, urn: str, news: dict[str, Any]) -> dict[str, Any]:
        response = self.check(urn, news)
        assert not response.failures, [(failure.property, failure.reason) for failure in response.failures]
        return _dict(response.inputs)

    def create(self, urn: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        response = self.stub.Create(provider_pb2.CreateRequest(urn=urn, properties=_struct(inputs), type=_token(urn)), timeout=CALL_SECONDS)
        return response.id, _dict(response.properties)

    def diff(self, urn: str, resource_id: str, state: dict[str, Any], news: dict[str, Any], old_inputs: dict[str, Any] | None = None):
        request = provider_pb2.DiffRequest(id=resource_id, urn=urn, olds=_struct(state), news=_struct(news), type=_token(urn))
        if old_inputs is not None:
            request.old_inputs.CopyFrom(_struct(old_inputs))
        return self.stub.Diff(request, timeout=CALL_SECONDS)

    def update(self, urn: str, resource_id: str, state: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        request = provider_pb2.UpdateRequest(id=resource_id, urn=urn, olds=_struct(state), news=_struct(news), type=_token(urn))
        return _dict(self.stub.Update(request, timeout=CALL_SECONDS).properties)

    def delete(self, urn: str, resource_id: str, state: dict[str, Any]) -> None:
        self.stub.Delete(
            provider_pb2.DeleteRequest(id=resource_id, urn=urn, properties=_struct(state), type=_token(urn)), timeout=CALL_SECONDS
        )

    def read(self, urn: str, resource_id: str, state: dict[str, Any]) -> provider_pb2.ReadResponse:
        return self.stub.Read(
            provider_pb2.ReadRequest(id=resource_id, urn=urn, properties=_struct(state), type=_token(urn)), timeout=CALL_SECONDS
        )


def _token(urn: str) -> str:
    return urn.split("::")[-2]


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(value)
    return result


def _dict(value: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(value)


def _read_port(process: subprocess.Popen) -> int:
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + START_SECONDS
    data = b""
    while b"\n" not in data and time.monotonic() < deadline:
        if selector.select(timeout=max(0.0, deadline - time.monotonic())):
            chunk = os.read(process.stdout.fileno(), 64)
            if not chunk:
                break
            data += chunk
    selector.close()
    assert data.endswith(b"\n") and data.strip().isdigit(), f"the plugin printed {data!r} instead of its port"
    return int(data)


@contextlib.contextmanager
def plugin(name: str, tmp_path: Path, extra_env: dict[str, str] | None = None) -> Iterator[Plugin]:
    """The ``pulumi-resource-<name>`` shim running with a fake engine; its TMPDIR is a fresh directory."""
    engine = FakeEngine()
    engine_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    engine_pb2_grpc.add_EngineServicer_to_server(engine, engine_server)
    engine_port = engine_server.add_insecure_port("127.0.0.1:0")
    engine_server.start()
    shims = {path.name: path for path in install_shims(tmp_path / "bin")}
    tmpdir = tmp_path / f"{name}-tmp"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir), **(extra_env or {})}
    process = subprocess.Popen(
        [str(shims[f"pulumi-resource-{name}"]), f"127.0.0.1:{engine_port}"], stdout=subprocess.PIPE, cwd=tmp_path, env=env
    )
    try:
        port = _read_port(process)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=START_SECONDS)
        yield Plugin(provider_pb2_grpc.ResourceProviderStub(channel), process, engine, tmpdir)
        channel.close()
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        process.stdout.close()
        engine_server.stop(0)


@pytest.fixture
def random_plugin(tmp_path: Path) -> Iterator[Plugin]:
    with plugin("random", tmp_path) as running:
        yield running


@pytest.fixture
def command_plugin(tmp_path: Path) -> Iterator[Plugin]:
    with plugin("command", tmp_path) as running:
        yield running


BYTES = "random:index/randomBytes:RandomBytes"
PASSWORD = "random:index/randomPassword:RandomPassword"
LOCAL = "command:local:Command"
REMOTE = "command:remote:Command"


# ---------------------------------------------------------------------------------------------------- plugin
def test_shims_are_executable_scripts_running_from_any_directory(tmp_path: Path) -> None:
    paths = install_shims(tmp_path)
    assert sorted(path.name for path in paths) == ["pulumi-resource-command", "pulumi-resource-random"]
    for path in paths:
        assert path.stat().st_mode & 0o777 == 0o755
        assert "exec " in path.read_text() and "PYTHONPATH=" in path.read_text()


@pytest.mark.parametrize(("name", "version"), [("command", "1.2.1"), ("random", "4.21.4")])
def test_plugin_info_configure_and_schema(tmp_path: Path, name: str, version: str) -> None:
    with plugin(name, tmp_path) as running:
        assert running.stub.GetPluginInfo(empty_pb2.Empty(), timeout=CALL_SECONDS).version == version
        configured = running.stub.Configure(provider_pb2.ConfigureRequest(), timeout=CALL_SECONDS)
        assert (configured.acceptSecrets, configured.supportsPreview, configured.acceptResources) == (False, False, False)
        assert f'"name": "{name}"' in running.stub.GetSchema(provider_pb2.GetSchemaRequest(), timeout=CALL_SECONDS).schema
        with pytest.raises(grpc.RpcError) as raised:
            running.stub.Handshake(provider_pb2.ProviderHandshakeRequest(), timeout=CALL_SECONDS)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED  # the engine falls back to argv


def test_plugin_stops_on_sigterm(tmp_path: Path) -> None:
    with plugin("random", tmp_path) as running:
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=15) == 0


# ---------------------------------------------------------------------------------------------------- random
def test_random_bytes_id_is_its_base64_and_outputs_match(random_plugin: Plugin) -> None:
    urn = random_plugin.urn(BYTES, "seed")
    inputs = random_plugin.checked(urn, {"length": 32, "keepers": {"key_version": "1"}})
    resource_id, outputs = random_plugin.create(urn, inputs)
    data = base64.b64decode(outputs["base64"], validate=True)
    assert len(data) == 32 and resource_id == outputs["base64"]
    assert outputs["hex"] == data.hex()
    assert outputs["length"] == 32 and outputs["keepers"] == {"key_version": "1"}
    other_id, _ = random_plugin.create(urn, inputs)
    assert other_id != resource_id  # fresh bytes at every create
    read = random_plugin.read(urn, resource_id, outputs)
    assert read.id == resource_id and _dict(read.properties) == outputs  # a refresh changes nothing


def test_random_bytes_replaced_on_any_input_change(random_plugin: Plugin) -> None:
    urn = random_plugin.urn(BYTES, "seed")
    inputs = random_plugin.checked(urn, {"length": 16, "keepers": {"key_version": "1"}})
    resource_id, state = random_plugin.create(urn, inputs)
    same = random_plugin.diff(urn, resource_id, state, inputs)
    assert same.changes == DIFF.DIFF_NONE and not same.replaces
    bumped = random_plugin.diff(urn, resource_id, state, {**inputs, "keepers": {"key_version": "2"}})
    assert bumped.changes == DIFF.DIFF_SOME and list(bumped.replaces) == ["keepers"]
    longer = random_plugin.diff(urn, resource_id, state, {**inputs, "length": 17}, old_inputs=inputs)
    assert list(longer.replaces) == ["length"]
    unknown = random_plugin.diff(urn, resource_id, state, {**inputs, "keepers": {"key_version": UNKNOWN}})
    assert list(unknown.replaces) == ["keepers"]  # not known yet during a preview: a change
    failures = random_plugin.check(urn, {"keepers": {}}).failures
    assert [failure.property for failure in failures] == ["length"]


def test_random_password_id_defaults_and_charset(random_plugin: Plugin) -> None:
    urn = random_plugin.urn(PASSWORD, "pw")
    resource_id, outputs = random_plugin.create(urn, random_plugin.checked(urn, {"length": 40}))
    assert resource_id == "none" and len(outputs["result"]) == 40
    expected = {"upper": True, "lower": True, "numeric": True, "number": True, "special": True, "minUpper": 0, "minLower": 0}
    assert expected.items() <= outputs.items() and outputs["minNumeric"] == 0 and outputs["minSpecial"] == 0
    allowed = set(string.ascii_lowercase + string.digits)
    for _ in range(10):
        inputs = random_plugin.checked(urn, {"length": 30, "upper": False, "special": False})
        _, outputs = random_plugin.create(urn, inputs)
        assert set(outputs["result"]) <= allowed and len(outputs["result"]) == 30
        _, outputs = random_plugin.create(urn, {"length": 12, "overrideSpecial": "#", "upper": False, "lower": False, "numeric": False})
        assert outputs["result"] == "#" * 12


def test_random_password_honours_min_counts(random_plugin: Plugin) -> None:
    urn = random_plugin.urn(PASSWORD, "pw")
    inputs = random_plugin.checked(
        urn, {"length": 12, "minUpper": 3, "minLower": 3, "minNumeric": 3, "minSpecial": 3, "overrideSpecial": "_-"}
    )
    for _ in range(20):
        result = random_plugin.create(urn, inputs)[1]["result"]
        assert sum(char.isupper() for char in result) >= 3 and sum(char.islower() for char in result) >= 3
        assert sum(char.isdigit() for char in result) >= 3 and sum(char in "_-" for char in result) >= 3
        assert set(result) <= set(string.ascii_letters + string.digits + "_-")
    too_short = random_plugin.check(urn, {"length": 5, "minUpper": 3, "minNumeric": 3}).failures
    assert [failure.property for failure in too_short] == ["length"]
    nothing = random_plugin.check(urn, {"length": 5, "upper": False, "lower": False, "numeric": False, "special": False}).failures
    assert nothing, "an empty character set is refused at check"
    _, state = random_plugin.create(urn, inputs)
    assert list(random_plugin.diff(urn, "none", state, {**inputs, "minSpecial": 4}, old_inputs=inputs).replaces) == ["minSpecial"]
    assert random_plugin.diff(urn, "none", state, {**inputs}, old_inputs=inputs).changes == DIFF.DIFF_NONE


# ----------------------------------------------------------------------------------------------- local command
def test_local_command_create_update_delete(command_plugin: Plugin, tmp_path: Path) -> None:
    urn = command_plugin.urn(LOCAL, "hello")
    marker = tmp_path / "deleted"
    news = {
        "create": 'printf "%s|%s\\n" "$GREETING" "$(cat)"; echo to-stderr >&2',
        "delete": f'printf "%s/%s" "$PULUMI_COMMAND_STDOUT" "$PULUMI_COMMAND_STDERR" > {marker}',
        "environment": {"GREETING": "hi"},
        "stdin": "from-stdin",
    }
    inputs = command_plugin.checked(urn, news)
    resource_id, state = command_plugin.create(urn, inputs)
    assert resource_id.startswith("hello") and len(resource_id) == len("hello") + 8
    assert int(resource_id[5:], 16) >= 0
    assert state["stdout"] == "hi|from-stdin" and state["stderr"] == "to-stderr"  # one trailing newline trimmed
    assert {key: state[key] for key in news} == news  # outputs carry every input

    changed = {**inputs, "create": "echo second; echo prev=$PULUMI_COMMAND_STDOUT"}
    diff = command_plugin.diff(urn, resource_id, state, changed, old_inputs=inputs)
    assert diff.changes == DIFF.DIFF_SOME and list(diff.diffs) == ["create"] and not diff.replaces  # an update
    state = command_plugin.update(urn, resource_id, state, changed)
    assert state["stdout"] == "second\nprev=hi|from-stdin" and state["stderr"] == ""

    with_update = {**changed, "update": "echo from-update"}
    state = command_plugin.update(urn, resource_id, state, with_update)
    assert state["stdout"] == "from-update"  # update runs `update` when there is one

    command_plugin.delete(urn, resource_id, state)
    assert marker.read_text() == "from-update/"


def test_local_command_previous_output_can_be_left_out(command_plugin: Plugin, tmp_path: Path) -> None:
    urn = command_plugin.urn(LOCAL, "quiet")
    marker = tmp_path / "env"
    inputs = {"create": "echo out", "delete": f"env > {marker}", "addPreviousOutputInEnv": False}
    resource_id, state = command_plugin.create(urn, inputs)
    command_plugin.delete(urn, resource_id, state)
    assert "PULUMI_COMMAND_STDOUT" not in marker.read_text()


def test_local_command_triggers_replace(command_plugin: Plugin) -> None:
    urn = command_plugin.urn(LOCAL, "scan")
    inputs = command_plugin.checked(urn, {"create": "echo key", "triggers": ["i-1"]})
    resource_id, state = command_plugin.create(urn, inputs)
    assert command_plugin.diff(urn, resource_id, state, inputs).changes == DIFF.DIFF_NONE
    diff = command_plugin.diff(urn, resource_id, state, {**inputs, "triggers": ["i-2"]}, old_inputs=inputs)
    assert list(diff.replaces) == ["triggers"]
    assert diff.detailedDiff["triggers"].kind == provider_pb2.PropertyDiff.UPDATE_REPLACE
    unknown = command_plugin.diff(urn, resource_id, state, {**inputs, "triggers": [UNKNOWN]}, old_inputs=inputs)
    assert list(unknown.replaces) == ["triggers"]
    assert command_plugin.check(urn, {"create": "x", "logging": "loud"}).failures[0].property == "logging"


def test_local_command_failure_message(command_plugin: Plugin) -> None:
    urn = command_plugin.urn(LOCAL, "fails")
    with pytest.raises(grpc.RpcError) as raised:
        command_plugin.create(urn, {"create": 'echo "it broke"; exit 3'})
    assert raised.value.details() == 'exit status 3: running "echo \\"it broke\\"; exit 3":\nit broke\n'


@pytest.mark.parametrize(
    ("logging", "logged"),
    [(None, {"out", "err"}), ("stdoutAndStderr", {"out", "err"}), ("stdout", {"out"}), ("stderr", {"err"}), ("none", set())],
)
def test_local_command_logging(command_plugin: Plugin, logging: str | None, logged: set[str]) -> None:
    urn = command_plugin.urn(LOCAL, f"log-{logging}")
    inputs = {"create": "echo out; echo err >&2", **({"logging": logging} if logging else {})}
    _, state = command_plugin.create(urn, inputs)
    assert (state["stdout"], state["stderr"]) == ("out", "err")  # captured whatever is logged
    lines = [log for log in command_plugin.engine.logs if log.urn == urn]
    assert {log.message for log in lines} == logged
    assert all(log.ephemeral and log.severity == engine_pb2.INFO for log in lines)


def test_local_command_interpreter_and_dir(command_plugin: Plugin, tmp_path: Path) -> None:
    urn = command_plugin.urn(LOCAL, "py")
    _, state = command_plugin.create(
        urn, {"create": "import os; print(os.getcwd())", "interpreter": ["python3", "-c"], "dir": str(tmp_path)}
    )
    assert state["stdout"] == str(tmp_path)


# ---------------------------------------------------------------------------------------------- remote command
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Sshd:
    port: int
    host_key: str
    private_key: str
    directory: Path
    other_host_key: str

    def connection(self, **overrides: Any) -> dict[str, Any]:
        base = {"host": "127.0.0.1", "port": self.port, "user": "root", "privateKey": self.private_key, "hostKey": self.host_key}
        return {**base, **overrides}


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "testproviders", "-f", str(path)], check=True, timeout=30)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A throwaway sshd on 127.0.0.1 (in its own mount namespace, for its /run/sshd), root login with one key."""
    sshd_path = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    if os.geteuid() != 0:
        pytest.skip("remote command tests need root (sshd with root login on 127.0.0.1)")
    if sshd_path is None or shutil.which("ssh") is None or shutil.which("unshare") is None:
        pytest.skip("remote command tests need sshd, ssh and unshare: apt-get install openssh-server openssh-client util-linux")
    directory = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key", "other_host_key"):
        _keygen(directory / name)
    (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
    port = _free_port()
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {directory / 'host_key'}\nPidFile none\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\nPermitRootLogin prohibit-password\nAuthenticationMethods publickey\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\n"
        "AcceptEnv GREETING PULUMI_COMMAND_STDOUT PULUMI_COMMAND_STDERR\nLogLevel VERBOSE\nMaxStartups 100\n"
    )
    log = open(directory / "sshd.log", "wb")  # noqa: SIM115 - open for the daemon's lifetime
    script = 'mount -t tmpfs -o mode=0755 none /run && mkdir -m 0755 /run/sshd && exec "$0" -D -e -f "$1"'
    daemon = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, sshd_path, str(config)], stderr=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and daemon.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            if sock.recv(8).startswith(b"SSH-"):
                break
        time.sleep(0.1)
    else:
        daemon.kill()
        pytest.fail(f"sshd did not start: {(directory / 'sshd.log').read_text()[-2000:]}")
    try:
        yield Sshd(
            port,
            (directory / "host_key.pub").read_text().strip(),
            (directory / "client_key").read_text(),
            directory,
            (directory / "other_host_key.pub").read_text().strip(),
        )
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=5)
        log.close()


def test_remote_command_runs_with_stdin_and_pinned_host_key(command_plugin: Plugin, sshd: Sshd) -> None:
    urn = command_plugin.urn(REMOTE, "install")
    inputs = command_plugin.checked(
        urn, {"connection": sshd.connection(), "create": "cat; echo installed >&2", "stdin": "the-secret-config\n", "logging": "stderr"}
    )
    assert {key: inputs["connection"][key] for key in ("port", "user", "dialErrorLimit", "perDialTimeout")} == {
        "port": sshd.port,
        "user": "root",
        "dialErrorLimit": 10,
        "perDialTimeout": 15,
    }
    resource_id, state = command_plugin.create(urn, inputs)
    assert resource_id.startswith("install") and state["stdout"] == "the-secret-config" and state["stderr"] == "installed"
    assert command_plugin.engine.messages(urn) == ["installed"]  # logging=stderr: stdout (the secret) not logged
    assert list(command_plugin.tmpdir.iterdir()) == []  # key, config and known_hosts gone


def test_remote_command_environment_and_previous_output(command_plugin: Plugin, sshd: Sshd) -> None:
    urn = command_plugin.urn(REMOTE, "env")
    marker = sshd.directory / "delete-saw"
    inputs = command_plugin.checked(
        urn,
        {
            "connection": sshd.connection(),
            "create": 'echo "$GREETING"',
            "update": 'echo "updated after $PULUMI_COMMAND_STDOUT"',
            "delete": f'echo "$PULUMI_COMMAND_STDOUT" > {marker}',
            "environment": {"GREETING": "hello"},
        },
    )
    resource_id, state = command_plugin.create(urn, inputs)
    assert state["stdout"] == "hello"
    state = command_plugin.update(urn, resource_id, state, {**inputs, "environment": {"GREETING": "again"}})
    assert state["stdout"] == "updated after hello"
    command_plugin.delete(urn, resource_id, state)
    assert marker.read_text() == "updated after hello\n"


def test_remote_command_wrong_host_key_refused_before_anything_runs(command_plugin: Plugin, sshd: Sshd) -> None:
    urn = command_plugin.urn(REMOTE, "mismatch")
    marker = sshd.directory / "ran"
    inputs = command_plugin.checked(
        urn, {"connection": sshd.connection(hostKey=sshd.other_host_key, dialErrorLimit=1), "create": f"touch {marker}", "stdin": "secret"}
    )
    with pytest.raises(grpc.RpcError) as raised:
        command_plugin.create(urn, inputs)
    assert raised.value.details() == "after 1 failed attempts: ssh: handshake failed: ssh: host key mismatch"
    assert not marker.exists()
    assert "Dial 1/1 failed: retrying" in command_plugin.engine.messages(urn)
    assert list(command_plugin.tmpdir.iterdir()) == []


def test_remote_command_dial_retries_are_bounded(command_plugin: Plugin, sshd: Sshd) -> None:
    urn = command_plugin.urn(REMOTE, "nobody")
    port = _free_port()  # nothing listens there
    inputs = command_plugin.checked(urn, {"connection": sshd.connection(port=port, dialErrorLimit=2, perDialTimeout=2), "create": "true"})
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as raised:
        command_plugin.create(urn, inputs)
    assert raised.value.details() == f"after 2 failed attempts: dial tcp 127.0.0.1:{port}: connect: connection refused"
    assert time.monotonic() - started < 20
    assert command_plugin.engine.messages(urn) == ["Dial 1/2 failed: retrying", "Dial 2/2 failed: retrying"]


def test_remote_command_failure_message(command_plugin: Plugin, sshd: Sshd) -> None:
    urn = command_plugin.urn(REMOTE, "fails")
    with pytest.raises(grpc.RpcError) as raised:
        command_plugin.create(urn, {"connection": sshd.connection(), "create": "echo oops; exit 4"})
    assert raised.value.details() == 'Process exited with status 4: running "echo oops; exit 4":\noops\n'


@pytest.mark.parametrize("files", ["memfd", "tempdir"])
def test_remote_command_killed_plugin_leaves_no_temp_files(tmp_path: Path, sshd: Sshd, files: str) -> None:
    """SIGTERM mid-command: the plugin stops its ssh and exits, leaving no file behind (in memory: none ever made)."""
    with plugin("command", tmp_path, {"TESTPROVIDERS_SSH_FILES": files}) as running:
        urn = running.urn(REMOTE, "slow")
        inputs = {"connection": sshd.connection(), "create": "echo started; sleep 30", "stdin": "secret"}
        with futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(running.create, urn, inputs)
            deadline = time.monotonic() + 20
            while "started" not in running.engine.messages(urn) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "started" in running.engine.messages(urn)
            on_disk = list(running.tmpdir.rglob("*"))
            if files == "memfd":
                assert on_disk == [], "with in-memory files nothing of ssh's is ever on disk"
            else:
                assert {path.name for path in on_disk} >= {"key", "config", "known_hosts"}
                assert all(path.stat().st_mode & 0o077 == 0 for path in on_disk)
            running.process.send_signal(signal.SIGTERM)
            assert running.process.wait(timeout=15) == 0
            with pytest.raises(grpc.RpcError):
                pending.result(timeout=15)
        assert list(running.tmpdir.iterdir()) == []


def test_remote_command_broken_session_is_not_retried(command_plugin: Plugin, sshd: Sshd) -> None:
    """A session that breaks after the command started fails at once (no dial retry: it may have run)."""
    urn = command_plugin.urn(REMOTE, "broken")
    count = sshd.directory / "broken-runs"
    with pytest.raises(grpc.RpcError) as raised:
        command_plugin.create(urn, {"connection": sshd.connection(), "create": f"echo run >> {count}; kill -9 $PPID"})
    assert raised.value.details().startswith("wait: remote command exited without exit status or exit signal: running ")
    assert count.read_text() == "run\n"


def test_remote_command_refused_key_message(command_plugin: Plugin, sshd: Sshd, tmp_path: Path) -> None:
    _keygen(tmp_path / "stranger")
    urn = command_plugin.urn(REMOTE, "stranger")
    inputs = {"connection": sshd.connection(privateKey=(tmp_path / "stranger").read_text(), dialErrorLimit=0), "create": "true"}
    with pytest.raises(grpc.RpcError) as raised:
        command_plugin.create(urn, inputs)
    assert raised.value.details() == (
        "after 0 failed attempts: ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], "
        "no supported methods remain"
    )


def test_go_quote_matches_strconv_quote() -> None:
    from testproviders.command import go_quote

    assert go_quote('a "b"\\c\n\té\x01\x7f') == '"a \\"b\\"\\\\c\\n\\té\\x01\\x7f"'


def test_ignore_changes_hides_a_change(command_plugin: Plugin) -> None:
    urn = command_plugin.urn(LOCAL, "ignored")
    inputs = {"create": "true", "triggers": ["a"]}
    resource_id, state = command_plugin.create(urn, inputs)
    request = provider_pb2.DiffRequest(
        id=resource_id, urn=urn, olds=_struct(state), news=_struct({**inputs, "triggers": ["b"]}), type=LOCAL, ignoreChanges=["triggers"]
    )
    assert command_plugin.stub.Diff(request, timeout=CALL_SECONDS).changes == DIFF.DIFF_NONE
