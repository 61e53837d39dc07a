"""A GPU device plugin for the real kubelet: the kubelet's device-plugin gRPC API (v1beta1,
k8s.io/kubelet/pkg/apis/deviceplugin) served from this process.

STAND-IN for NVIDIA's device plugin: this machine has no GPU, so the devices are names, not
hardware. Everything around them is real: the plugin registers with the kubelet over its
Registration socket, the kubelet streams the devices (ListAndWatch) into the node's capacity
and allocatable as nvidia.com/gpu, and before a container that requests GPUs starts, the
kubelet calls Allocate, whose answer (NVIDIA_VISIBLE_DEVICES, as NVIDIA's plugin sets it)
reaches the container's environment.

No generated stubs are checked in (grpcio-tools is not in the lock): the messages this plugin
exchanges are declared below from upstream's api.proto (same package, names and field numbers,
so the wire format is the kubelet's), and the services are served with grpcio's generic handlers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

# The process serving this plugin goes on starting components (fork, then exec, with a Python
# preexec_fn in between): gRPC's fork handlers, for children that go on using gRPC, made such a
# child die of SIGSEGV before its exec (the local stack's operator, started after the real
# node). No child here uses gRPC, so they are off; grpc reads this when it is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
import grpc  # type: ignore[import-untyped]  # grpcio ships no type hints
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

API_VERSION = "v1beta1"
HEALTHY = "Healthy"
# Where the kubelet always looks, whatever its --root-dir (pluginapi.DevicePluginPath).
DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")
KUBELET_SOCKET = DEVICE_PLUGIN_DIR / "kubelet.sock"
VISIBLE_DEVICES_ENV = "NVIDIA_VISIBLE_DEVICES"

_STRING = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
_BOOL = descriptor_pb2.FieldDescriptorProto.TYPE_BOOL
_MESSAGE = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
_OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
_REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED

# (message, [(field, number, type, label, message type)]): the subset of api.proto used here.
# Fields the kubelet sends that are left out are skipped by the parser, as proto3 allows.
_MESSAGES: list[tuple[str, list[tuple[str, int, int, int, str]]]] = [
    ("Empty", []),
    (
        "DevicePluginOptions",
        [
            ("pre_start_required", 1, _BOOL, _OPTIONAL, ""),
            ("get_preferred_allocation_available", 2, _BOOL, _OPTIONAL, ""),
        ],
    ),
    (
        "RegisterRequest",
        [
            ("version", 1, _STRING, _OPTIONAL, ""),
            ("endpoint", 2, _STRING, _OPTIONAL, ""),
            ("resource_name", 3, _STRING, _OPTIONAL, ""),
            ("options", 4, _MESSAGE, _OPTIONAL, "DevicePluginOptions"),
        ],
    ),
    ("Device", [("ID", 1, _STRING, _OPTIONAL, ""), ("health", 2, _STRING, _OPTIONAL, "")]),
    ("ListAndWatchResponse", [("devices", 1, _MESSAGE, _REPEATED, "Device")]),
    ("ContainerAllocateRequest", [("devices_ids", 1, _STRING, _REPEATED, "")]),
    (
        "AllocateRequest",
        [("container_requests", 1, _MESSAGE, _REPEATED, "ContainerAllocateRequest")],
    ),
    (
        "AllocateResponse",
        [("container_responses", 1, _MESSAGE, _REPEATED, "ContainerAllocateResponse")],
    ),
]


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="facecast_testbed/deviceplugin_v1beta1.proto", package=API_VERSION, syntax="proto3"
    )
    for name, fields in _MESSAGES:
        message = file.message_type.add(name=name)
        for field, number, kind, label, type_name in fields:
            added = message.field.add(name=field, number=number, type=kind, label=label)
            if type_name:
                added.type_name = f".{API_VERSION}.{type_name}"
    # ContainerAllocateResponse.envs is a map<string, string>: a repeated nested entry message.
    response = file.message_type.add(name="ContainerAllocateResponse")
    entry = response.nested_type.add(name="EnvsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_STRING, label=_OPTIONAL)
    entry.field.add(name="value", number=2, type=_STRING, label=_OPTIONAL)
    response.field.add(
        name="envs",
        number=1,
        type=_MESSAGE,
        label=_REPEATED,
        type_name=f".{API_VERSION}.ContainerAllocateResponse.EnvsEntry",
    )
    return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def message_class(name: str) -> Any:
    """The generated class of message `name` (protobuf builds it from the descriptor)."""
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{API_VERSION}.{name}"))


Empty = message_class("Empty")
DevicePluginOptions = message_class("DevicePluginOptions")
RegisterRequest = message_class("RegisterRequest")
Device = message_class("Device")
ListAndWatchResponse = message_class("ListAndWatchResponse")
AllocateRequest = message_class("AllocateRequest")
AllocateResponse = message_class("AllocateResponse")


def allocation_envs(device_ids: list[str]) -> dict[str, str]:
    """What a container that was given these devices sees, as NVIDIA's plugin sets it."""
    return {VISIBLE_DEVICES_ENV: ",".join(device_ids)}


class GpuDevicePlugin:
    """Serves `count` healthy devices of `resource` on a socket in the kubelet's plugin dir.

    The kubelet dials the plugin back on `endpoint` (a name relative to its plugin dir) after
    Register; ListAndWatch streams the device list once and then stays open, as the kubelet
    takes a closed stream for a plugin that went away.
    """

    def __init__(self, resource: str, count: int, endpoint: str) -> None:
        self.resource = resource
        self.devices = [f"facecast-gpu-{index}" for index in range(count)]
        self.endpoint = endpoint
        self.socket = DEVICE_PLUGIN_DIR / endpoint
        self.allocations: list[list[str]] = []
        self._stopped = threading.Event()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            "GetDevicePluginOptions": grpc.unary_unary_rpc_method_handler(
                self._options,
                request_deserializer=Empty.FromString,
                response_serializer=DevicePluginOptions.SerializeToString,
            ),
            "ListAndWatch": grpc.unary_stream_rpc_method_handler(
                self._list_and_watch,
                request_deserializer=Empty.FromString,
                response_serializer=ListAndWatchResponse.SerializeToString,
            ),
            "Allocate": grpc.unary_unary_rpc_method_handler(
                self._allocate,
                request_deserializer=AllocateRequest.FromString,
                response_serializer=AllocateResponse.SerializeToString,
            ),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(f"{API_VERSION}.DevicePlugin", handlers),)
        )

    def _options(self, request: Any, context: grpc.ServicerContext) -> Any:
        return DevicePluginOptions()

    def _list_and_watch(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        yield ListAndWatchResponse(
            devices=[Device(ID=name, health=HEALTHY) for name in self.devices]
        )
        # Held open until this plugin stops or the kubelet hangs up.
        while not self._stopped.wait(0.5) and context.is_active():
            pass

    def _allocate(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = AllocateResponse()
        for container in request.container_requests:
            ids = list(container.devices_ids)
            unknown = sorted(set(ids) - set(self.devices))
            if unknown:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown devices {unknown}")
            self.allocations.append(ids)
            response.container_responses.add().envs.update(allocation_envs(ids))
        return response

    def start(self) -> None:
        """Serve, then register with the kubelet (whose socket must exist by now)."""
        self.socket.unlink(missing_ok=True)
        self._server.add_insecure_port(f"unix://{self.socket}")
        self._server.start()
        with grpc.insecure_channel(f"unix://{KUBELET_SOCKET}") as channel:
            register = channel.unary_unary(
                f"/{API_VERSION}.Registration/Register",
                request_serializer=RegisterRequest.SerializeToString,
                response_deserializer=Empty.FromString,
            )
            register(
                RegisterRequest(
                    version=API_VERSION, endpoint=self.endpoint, resource_name=self.resource
                ),
                timeout=10,
            )

    def stop(self) -> None:
        self._stopped.set()
        self._server.stop(grace=None).wait(10)
        self.socket.unlink(missing_ok=True)
