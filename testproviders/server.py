"""The gRPC side shared by the test providers: a ``pulumirpc.ResourceProvider`` servicer and the plugin's main loop.

A provider plugin is started by the engine with its own gRPC address as the last argument; it listens on a free
loopback port, prints that port and a newline on stdout (the only thing it ever prints there: the engine logs the
rest of stdout) and serves until the engine kills it. Each provider module declares its resources as
:class:`Resource` subclasses and hands them to :func:`main`.

Protocol choices, all tolerated by the engine (pkg/resource/plugin/provider_plugin.go):

* ``Handshake`` is left UNIMPLEMENTED: the engine then falls back to the address on the command line;
* ``Configure`` answers acceptSecrets, acceptResources and supportsPreview all false: the engine strips secret
  markers (and re-marks the outputs of secret inputs), sends plain resource references, and during a preview
  answers ``Create``/``Update`` itself with the inputs, so no command ever runs in a preview;
* ``GetSchema`` returns a minimal schema (name and version): nothing in ``pulumi up`` needs more;
* errors are plain gRPC errors (code UNKNOWN) carrying the official provider's message: pulumi-command returns its
  command failures as plain errors too (no ``ErrorResourceInitFailed`` partial state), so a failed create leaves
  nothing in the state.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, ClassVar

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc, plugin_pb2, provider_pb2, provider_pb2_grpc

from testproviders import process

# What the engine sends in place of a value not known yet (during a preview), in any position of a property value.
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
# How long calls under way may run on once the engine that started this plugin is gone (killed).
ORPHAN_GRACE_SECONDS = 300
# How long the server waits for calls under way when it is asked to stop.
GRACE_SECONDS = 5.0


class ProviderError(Exception):
    """A resource operation failed: the engine shows this message as the resource's error."""


def to_dict(message: struct_pb2.Struct | None) -> dict[str, Any]:
    """A ``google.protobuf.Struct`` as a plain dict (numbers come back as floats, as in any Struct)."""
    if message is None:
        return {}
    return json_format.MessageToDict(message)


def to_struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(_plain(value))
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def has_unknown(value: Any) -> bool:
    """Whether ``value`` is, or holds anywhere, the engine's unknown sentinel."""
    if isinstance(value, str):
        return value == UNKNOWN
    if isinstance(value, Mapping):
        return any(has_unknown(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_unknown(item) for item in value)
    return False


def resource_name(urn: str) -> str:
    """The resource's name: the last ``::`` field of its URN."""
    return urn.rsplit("::", 1)[-1]


# ------------------------------------------------------------------------------------------------ temp directories
_TEMP_DIRS: set[str] = set()
_TEMP_LOCK = threading.Lock()


class PrivateTempDir:
    """A 0700 temporary directory removed on exit, and also if the plugin is stopped with SIGTERM/SIGINT/SIGHUP."""

    def __init__(self, prefix: str) -> None:
        self.path = tempfile.mkdtemp(prefix=prefix)
        with _TEMP_LOCK:
            _TEMP_DIRS.add(self.path)

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        with _TEMP_LOCK:
            _TEMP_DIRS.discard(self.path)


def remove_temp_dirs() -> None:
    with _TEMP_LOCK:
        paths = list(_TEMP_DIRS)
        _TEMP_DIRS.clear()
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- engine log
class EngineLog:
    """The engine's ``Log`` RPC (the address the engine passed us), or nothing when there is no engine (tests)."""

    def __init__(self, address: str | None) -> None:
        self._stub = None
        if address:
            self._channel = grpc.insecure_channel(address)
            self._stub = engine_pb2_grpc.EngineStub(self._channel)

    def log(self, severity: int, message: str, urn: str = "", *, ephemeral: bool = False) -> None:
        if self._stub is None:
            return
        # A log line is not worth failing a resource over.
        with contextlib.suppress(grpc.RpcError):
            self._stub.Log(engine_pb2.LogRequest(severity=severity, message=message, urn=urn, ephemeral=ephemeral), timeout=10)


@dataclass
class Context:
    """What an operation knows of its call: the resource's URN and name, and how to log against it."""

    urn: str
    engine: EngineLog
    timeout: float | None = None  # seconds (the resource's customTimeouts), None: no limit
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = resource_name(self.urn)

    def info_status(self, message: str) -> None:
        """An ephemeral info line on the resource (the go provider SDK's ``InfoStatus``: shown while it runs)."""
        self.engine.log(engine_pb2.INFO, message, self.urn, ephemeral=True)

    def warning(self, message: str) -> None:
        self.engine.log(engine_pb2.WARNING, message, self.urn)

    def error(self, message: str) -> None:
        self.engine.log(engine_pb2.ERROR, message, self.urn)


# ------------------------------------------------------------------------------------------------------ resources
@dataclass
class DiffResult:
    changed: list[str]
    replaces: list[str]
    kinds: dict[str, int]
    delete_before_replace: bool = False


class Resource:
    """One resource type. Subclasses set ``token``, ``inputs`` (camelCase names) and the operations."""

    token: ClassVar[str]
    inputs: ClassVar[frozenset[str]]
    required: ClassVar[frozenset[str]] = frozenset()

    def check(self, news: dict[str, Any], olds: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """The inputs with defaults applied, and (property, reason) failures."""
        failures = [(name, f"missing required property '{name}'") for name in sorted(self.required) if name not in news]
        return news, failures

    def normalize(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Inputs as compared by :meth:`diff` (defaults filled in, internal ``__`` keys dropped)."""
        return {key: value for key, value in inputs.items() if not key.startswith("__")}

    def replaces_on(self, key: str, old: Any, new: Any) -> bool:
        return False

    def diff(self, state: dict[str, Any], news: dict[str, Any], old_inputs: dict[str, Any] | None) -> DiffResult:
        """Property-level diff of the old inputs against the new ones; a value not known yet counts as a change."""
        olds = old_inputs if old_inputs is not None else {key: state[key] for key in self.inputs if key in state}
        olds, news = self.normalize(olds), self.normalize(news)
        changed, replaces, kinds = [], [], {}
        for key in sorted(set(olds) | set(news)):
            if key in olds and key in news and olds[key] == news[key] and not has_unknown(news[key]):
                continue
            replace = self.replaces_on(key, olds.get(key), news.get(key))
            if key not in olds:
                kind = provider_pb2.PropertyDiff.ADD_REPLACE if replace else provider_pb2.PropertyDiff.ADD
            elif key not in news:
                kind = provider_pb2.PropertyDiff.DELETE_REPLACE if replace else provider_pb2.PropertyDiff.DELETE
            else:
                kind = provider_pb2.PropertyDiff.UPDATE_REPLACE if replace else provider_pb2.PropertyDiff.UPDATE
            changed.append(key)
            kinds[key] = kind
            if replace:
                replaces.append(key)
        return DiffResult(changed, replaces, kinds)

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def update(self, ctx: Context, resource_id: str, state: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        raise ProviderError(f"{self.token} cannot be updated in place")

    def delete(self, ctx: Context, resource_id: str, state: dict[str, Any]) -> None:
        return None

    def read(self, resource_id: str, state: dict[str, Any], inputs: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """A refresh: what the state says (nothing here lives anywhere but in the state)."""
        return resource_id, state, inputs


class Provider(provider_pb2_grpc.ResourceProviderServicer):
    """A ``pulumirpc.ResourceProvider`` over :class:`Resource` handlers; what it does not implement is UNIMPLEMENTED."""

    def __init__(self, name: str, version: str, resources: Iterable[Resource], engine: EngineLog) -> None:
        self.name = name
        self.version = version
        self.resources = {resource.token: resource for resource in resources}
        self.engine = engine

    # ------------------------------------------------------------------------------------------- plumbing
    def _resource(self, urn: str, type_: str, context: grpc.ServicerContext) -> Resource:
        token = type_ or urn.split("::")[-2].rsplit("$", 1)[-1]
        resource = self.resources.get(token)
        if resource is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown resource type {token!r} (test provider {self.name})")
        return resource

    @staticmethod
    def _fail(context: grpc.ServicerContext, error: Exception) -> None:
        context.abort(grpc.StatusCode.UNKNOWN, str(error))

    # ---------------------------------------------------------------------------------------------- plugin
    def GetPluginInfo(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> plugin_pb2.PluginInfo:
        return plugin_pb2.PluginInfo(version=self.version)

    def GetSchema(self, request: provider_pb2.GetSchemaRequest, context: grpc.ServicerContext) -> provider_pb2.GetSchemaResponse:
        return provider_pb2.GetSchemaResponse(schema=json.dumps({"name": self.name, "version": self.version}))

    def CheckConfig(self, request: provider_pb2.CheckRequest, context: grpc.ServicerContext) -> provider_pb2.CheckResponse:
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(self, request: provider_pb2.DiffRequest, context: grpc.ServicerContext) -> provider_pb2.DiffResponse:
        return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)

    def Configure(self, request: provider_pb2.ConfigureRequest, context: grpc.ServicerContext) -> provider_pb2.ConfigureResponse:
        return provider_pb2.ConfigureResponse(acceptSecrets=False, supportsPreview=False, acceptResources=False, acceptOutputs=False)

    def Cancel(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    # ------------------------------------------------------------------------------------------- resources
    def Check(self, request: provider_pb2.CheckRequest, context: grpc.ServicerContext) -> provider_pb2.CheckResponse:
        resource = self._resource(request.urn, request.type, context)
        inputs, failures = resource.check(to_dict(request.news), to_dict(request.olds))
        return provider_pb2.CheckResponse(
            inputs=to_struct(inputs),
            failures=[provider_pb2.CheckFailure(property=name, reason=reason) for name, reason in failures],
        )

    def Diff(self, request: provider_pb2.DiffRequest, context: grpc.ServicerContext) -> provider_pb2.DiffResponse:
        resource = self._resource(request.urn, request.type, context)
        old_inputs = to_dict(request.old_inputs) if request.HasField("old_inputs") else None
        state, news = to_dict(request.olds), to_dict(request.news)
        for path in request.ignoreChanges:  # top-level paths only: enough for what these resources take
            previous = old_inputs if old_inputs is not None else state
            if path in previous:
                news[path] = previous[path]
            else:
                news.pop(path, None)
        result = resource.diff(state, news, old_inputs)
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME if result.changed else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=result.changed,
            replaces=result.replaces,
            deleteBeforeReplace=result.delete_before_replace,
            detailedDiff={key: provider_pb2.PropertyDiff(kind=kind, inputDiff=True) for key, kind in result.kinds.items()},
            hasDetailedDiff=True,
        )

    def Create(self, request: provider_pb2.CreateRequest, context: grpc.ServicerContext) -> provider_pb2.CreateResponse:
        resource = self._resource(request.urn, request.type, context)
        inputs = to_dict(request.properties)
        if request.preview:  # not asked for (supportsPreview is false), answered as the engine would
            return provider_pb2.CreateResponse(properties=request.properties)
        try:
            resource_id, outputs = resource.create(Context(request.urn, self.engine, request.timeout or None), inputs)
        except ProviderError as error:
            self._fail(context, error)
        return provider_pb2.CreateResponse(id=resource_id, properties=to_struct(outputs))

    def Update(self, request: provider_pb2.UpdateRequest, context: grpc.ServicerContext) -> provider_pb2.UpdateResponse:
        resource = self._resource(request.urn, request.type, context)
        if request.preview:
            return provider_pb2.UpdateResponse(properties=request.news)
        try:
            outputs = resource.update(
                Context(request.urn, self.engine, request.timeout or None), request.id, to_dict(request.olds), to_dict(request.news)
            )
        except ProviderError as error:
            self._fail(context, error)
        return provider_pb2.UpdateResponse(properties=to_struct(outputs))

    def Delete(self, request: provider_pb2.DeleteRequest, context: grpc.ServicerContext) -> empty_pb2.Empty:
        resource = self._resource(request.urn, request.type, context)
        try:
            resource.delete(Context(request.urn, self.engine, request.timeout or None), request.id, to_dict(request.properties))
        except ProviderError as error:
            self._fail(context, error)
        return empty_pb2.Empty()

    def Read(self, request: provider_pb2.ReadRequest, context: grpc.ServicerContext) -> provider_pb2.ReadResponse:
        resource = self._resource(request.urn, request.type, context)
        resource_id, state, inputs = resource.read(request.id, to_dict(request.properties), to_dict(request.inputs))
        return provider_pb2.ReadResponse(id=resource_id, properties=to_struct(state), inputs=to_struct(inputs))


# ------------------------------------------------------------------------------------------------------ the plugin
def engine_address(argv: list[str]) -> str | None:
    """The engine's address: the last argument (logging and tracing flags come before it), if any."""
    positional = [arg for arg in argv if not arg.startswith("-")]
    return positional[-1] if positional else None


def main(name: str, version: str, resources: Callable[[], Iterable[Resource]], argv: list[str] | None = None) -> None:
    """Serve ``resources`` on a free loopback port until stopped; the port goes to stdout, as the engine expects."""
    argv = sys.argv[1:] if argv is None else argv
    engine = EngineLog(engine_address(argv))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix=f"{name}-provider"))
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(Provider(name, version, resources(), engine), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stopped = threading.Event()

    def stop(signum: int, frame: object) -> None:
        # The engine kills a plugin it is done with (or on cancellation): stop our commands, leave no key files.
        process.terminate_children()
        remove_temp_dirs()
        stopped.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    # The engine closes our stdin... not always: wait for a signal, polling so signals are handled promptly. An engine
    # that was killed (SIGKILL: an interrupted `pulumi up`) sends none: when the parent is gone, let the calls under
    # way finish (a command already sent runs to its end, as it would on a real host), then exit, leaving nothing.
    parent = os.getppid()
    orphaned = False
    while not stopped.wait(1.0):
        if os.getppid() != parent:
            orphaned = True
            break
    server.stop(ORPHAN_GRACE_SECONDS if orphaned else GRACE_SECONDS).wait(ORPHAN_GRACE_SECONDS if orphaned else GRACE_SECONDS)
    remove_temp_dirs()
    # Calls still running (a command over SSH) hold non-daemon threads: do not wait for them.
    os._exit(0)
