from runtime.protocol import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RayletEmpty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartActorRequest(_message.Message):
    __slots__ = ("actor",)
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    actor: _common_pb2.ActorInfo
    def __init__(self, actor: _Optional[_Union[_common_pb2.ActorInfo, _Mapping]] = ...) -> None: ...

class StartActorReply(_message.Message):
    __slots__ = ("address", "pid", "error", "no_room")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NO_ROOM_FIELD_NUMBER: _ClassVar[int]
    address: str
    pid: int
    error: str
    no_room: bool
    def __init__(self, address: _Optional[str] = ..., pid: _Optional[int] = ..., error: _Optional[str] = ..., no_room: _Optional[bool] = ...) -> None: ...

class KillActorWorkerRequest(_message.Message):
    __slots__ = ("actor_id", "force")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    force: bool
    def __init__(self, actor_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class NodeStatsReply(_message.Message):
    __slots__ = ("node", "num_workers", "num_idle_workers", "object_store_used", "object_store_capacity", "load", "transfer_bytes_received", "transfer_bytes_sent", "queued_leases")
    NODE_FIELD_NUMBER: _ClassVar[int]
    NUM_WORKERS_FIELD_NUMBER: _ClassVar[int]
    NUM_IDLE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_USED_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_LEASES_FIELD_NUMBER: _ClassVar[int]
    node: _common_pb2.NodeInfo
    num_workers: int
    num_idle_workers: int
    object_store_used: int
    object_store_capacity: int
    load: _containers.RepeatedCompositeFieldContainer[_common_pb2.ShapeCount]
    transfer_bytes_received: int
    transfer_bytes_sent: int
    queued_leases: int
    def __init__(self, node: _Optional[_Union[_common_pb2.NodeInfo, _Mapping]] = ..., num_workers: _Optional[int] = ..., num_idle_workers: _Optional[int] = ..., object_store_used: _Optional[int] = ..., object_store_capacity: _Optional[int] = ..., load: _Optional[_Iterable[_Union[_common_pb2.ShapeCount, _Mapping]]] = ..., transfer_bytes_received: _Optional[int] = ..., transfer_bytes_sent: _Optional[int] = ..., queued_leases: _Optional[int] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("deadline_s", "force", "reason", "idle_only")
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IDLE_ONLY_FIELD_NUMBER: _ClassVar[int]
    deadline_s: float
    force: bool
    reason: str
    idle_only: bool
    def __init__(self, deadline_s: _Optional[float] = ..., force: _Optional[bool] = ..., reason: _Optional[str] = ..., idle_only: _Optional[bool] = ...) -> None: ...

class DrainReply(_message.Message):
    __slots__ = ("accepted", "reason", "drain")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    drain: _common_pb2.NodeDrain
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., drain: _Optional[_Union[_common_pb2.NodeDrain, _Mapping]] = ...) -> None: ...

class FreeRequest(_message.Message):
    __slots__ = ("object_ids",)
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, object_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListObjectsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class StoredObject(_message.Message):
    __slots__ = ("object_id", "size", "primary", "in_memory", "spilled", "pins")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    IN_MEMORY_FIELD_NUMBER: _ClassVar[int]
    SPILLED_FIELD_NUMBER: _ClassVar[int]
    PINS_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    size: int
    primary: bool
    in_memory: bool
    spilled: bool
    pins: int
    def __init__(self, object_id: _Optional[str] = ..., size: _Optional[int] = ..., primary: _Optional[bool] = ..., in_memory: _Optional[bool] = ..., spilled: _Optional[bool] = ..., pins: _Optional[int] = ...) -> None: ...

class ListObjectsReply(_message.Message):
    __slots__ = ("objects", "total")
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[StoredObject]
    total: int
    def __init__(self, objects: _Optional[_Iterable[_Union[StoredObject, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class LogFile(_message.Message):
    __slots__ = ("name", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class ListLogsReply(_message.Message):
    __slots__ = ("files",)
    FILES_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[LogFile]
    def __init__(self, files: _Optional[_Iterable[_Union[LogFile, _Mapping]]] = ...) -> None: ...

class ReadLogRequest(_message.Message):
    __slots__ = ("name", "tail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    tail: int
    def __init__(self, name: _Optional[str] = ..., tail: _Optional[int] = ...) -> None: ...

class ReadLogReply(_message.Message):
    __slots__ = ("found", "data")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    found: bool
    data: bytes
    def __init__(self, found: _Optional[bool] = ..., data: _Optional[bytes] = ...) -> None: ...
