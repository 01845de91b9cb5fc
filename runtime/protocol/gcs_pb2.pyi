from runtime.protocol import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegisterNodeRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _common_pb2.NodeInfo
    def __init__(self, node: _Optional[_Union[_common_pb2.NodeInfo, _Mapping]] = ...) -> None: ...

class RegisterNodeReply(_message.Message):
    __slots__ = ("cluster_id", "session_dir", "ping_s")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_DIR_FIELD_NUMBER: _ClassVar[int]
    PING_S_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    session_dir: str
    ping_s: float
    def __init__(self, cluster_id: _Optional[str] = ..., session_dir: _Optional[str] = ..., ping_s: _Optional[float] = ...) -> None: ...

class NodeReport(_message.Message):
    __slots__ = ("node_id", "seq", "ping", "available", "total", "idle_since", "load_changed", "load", "drain")
    class AvailableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TotalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    IDLE_SINCE_FIELD_NUMBER: _ClassVar[int]
    LOAD_CHANGED_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    seq: int
    ping: bool
    available: _containers.ScalarMap[str, float]
    total: _containers.ScalarMap[str, float]
    idle_since: float
    load_changed: bool
    load: _containers.RepeatedCompositeFieldContainer[_common_pb2.ShapeCount]
    drain: _common_pb2.NodeDrain
    def __init__(self, node_id: _Optional[str] = ..., seq: _Optional[int] = ..., ping: _Optional[bool] = ..., available: _Optional[_Mapping[str, float]] = ..., total: _Optional[_Mapping[str, float]] = ..., idle_since: _Optional[float] = ..., load_changed: _Optional[bool] = ..., load: _Optional[_Iterable[_Union[_common_pb2.ShapeCount, _Mapping]]] = ..., drain: _Optional[_Union[_common_pb2.NodeDrain, _Mapping]] = ...) -> None: ...

class ViewUpdate(_message.Message):
    __slots__ = ("unknown_node", "ack", "version", "full", "nodes", "available")
    UNKNOWN_NODE_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    unknown_node: bool
    ack: int
    version: int
    full: bool
    nodes: _containers.RepeatedCompositeFieldContainer[_common_pb2.NodeInfo]
    available: _containers.RepeatedCompositeFieldContainer[NodeAvailable]
    def __init__(self, unknown_node: _Optional[bool] = ..., ack: _Optional[int] = ..., version: _Optional[int] = ..., full: _Optional[bool] = ..., nodes: _Optional[_Iterable[_Union[_common_pb2.NodeInfo, _Mapping]]] = ..., available: _Optional[_Iterable[_Union[NodeAvailable, _Mapping]]] = ...) -> None: ...

class NodeAvailable(_message.Message):
    __slots__ = ("node_id", "changed")
    class ChangedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    changed: _containers.ScalarMap[str, float]
    def __init__(self, node_id: _Optional[str] = ..., changed: _Optional[_Mapping[str, float]] = ...) -> None: ...

class GetNodesReply(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_common_pb2.NodeInfo]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_common_pb2.NodeInfo, _Mapping]]] = ...) -> None: ...

class NodeIdRequest(_message.Message):
    __slots__ = ("node_id", "reason")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    reason: str
    def __init__(self, node_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class KvRequest(_message.Message):
    __slots__ = ("ns", "key", "value", "overwrite")
    NS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    ns: str
    key: str
    value: bytes
    overwrite: bool
    def __init__(self, ns: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[bytes] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class KvReply(_message.Message):
    __slots__ = ("found", "value", "keys", "written")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    keys: _containers.RepeatedScalarFieldContainer[str]
    written: bool
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ..., keys: _Optional[_Iterable[str]] = ..., written: _Optional[bool] = ...) -> None: ...

class RegisterJobRequest(_message.Message):
    __slots__ = ("versions", "driver_address", "driver_pid", "namespace", "submission_id")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_PID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SUBMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    versions: _common_pb2.Versions
    driver_address: str
    driver_pid: int
    namespace: str
    submission_id: str
    def __init__(self, versions: _Optional[_Union[_common_pb2.Versions, _Mapping]] = ..., driver_address: _Optional[str] = ..., driver_pid: _Optional[int] = ..., namespace: _Optional[str] = ..., submission_id: _Optional[str] = ...) -> None: ...

class RegisterJobReply(_message.Message):
    __slots__ = ("job_id", "cluster_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    cluster_id: str
    def __init__(self, job_id: _Optional[str] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class JobIdRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CreateActorRequest(_message.Message):
    __slots__ = ("actor",)
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    actor: _common_pb2.ActorInfo
    def __init__(self, actor: _Optional[_Union[_common_pb2.ActorInfo, _Mapping]] = ...) -> None: ...

class CreateActorReply(_message.Message):
    __slots__ = ("actor", "error")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    actor: _common_pb2.ActorInfo
    error: str
    def __init__(self, actor: _Optional[_Union[_common_pb2.ActorInfo, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class GetActorRequest(_message.Message):
    __slots__ = ("actor_id", "name", "namespace", "after_version", "timeout_s")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    name: str
    namespace: str
    after_version: int
    timeout_s: float
    def __init__(self, actor_id: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., after_version: _Optional[int] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class GetActorReply(_message.Message):
    __slots__ = ("found", "actor")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    found: bool
    actor: _common_pb2.ActorInfo
    def __init__(self, found: _Optional[bool] = ..., actor: _Optional[_Union[_common_pb2.ActorInfo, _Mapping]] = ...) -> None: ...

class KillActorRequest(_message.Message):
    __slots__ = ("actor_id", "no_restart")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    NO_RESTART_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    no_restart: bool
    def __init__(self, actor_id: _Optional[str] = ..., no_restart: _Optional[bool] = ...) -> None: ...

class ActorDiedRequest(_message.Message):
    __slots__ = ("actor_id", "worker_address", "reason")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    worker_address: str
    reason: str
    def __init__(self, actor_id: _Optional[str] = ..., worker_address: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FeasibleRequest(_message.Message):
    __slots__ = ("shape",)
    class ShapeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.ScalarMap[str, float]
    def __init__(self, shape: _Optional[_Mapping[str, float]] = ...) -> None: ...

class FeasibleReply(_message.Message):
    __slots__ = ("fits_now", "fits_a_node", "fits_launchable")
    FITS_NOW_FIELD_NUMBER: _ClassVar[int]
    FITS_A_NODE_FIELD_NUMBER: _ClassVar[int]
    FITS_LAUNCHABLE_FIELD_NUMBER: _ClassVar[int]
    fits_now: bool
    fits_a_node: bool
    fits_launchable: bool
    def __init__(self, fits_now: _Optional[bool] = ..., fits_a_node: _Optional[bool] = ..., fits_launchable: _Optional[bool] = ...) -> None: ...

class CreatePlacementGroupRequest(_message.Message):
    __slots__ = ("pg",)
    PG_FIELD_NUMBER: _ClassVar[int]
    pg: _common_pb2.PlacementGroupInfo
    def __init__(self, pg: _Optional[_Union[_common_pb2.PlacementGroupInfo, _Mapping]] = ...) -> None: ...

class CreatePlacementGroupReply(_message.Message):
    __slots__ = ("pg", "error")
    PG_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    pg: _common_pb2.PlacementGroupInfo
    error: str
    def __init__(self, pg: _Optional[_Union[_common_pb2.PlacementGroupInfo, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class GetPlacementGroupRequest(_message.Message):
    __slots__ = ("pg_id", "name", "namespace", "after_version", "timeout_s")
    PG_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    pg_id: str
    name: str
    namespace: str
    after_version: int
    timeout_s: float
    def __init__(self, pg_id: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., after_version: _Optional[int] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class GetPlacementGroupReply(_message.Message):
    __slots__ = ("found", "pg")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    PG_FIELD_NUMBER: _ClassVar[int]
    found: bool
    pg: _common_pb2.PlacementGroupInfo
    def __init__(self, found: _Optional[bool] = ..., pg: _Optional[_Union[_common_pb2.PlacementGroupInfo, _Mapping]] = ...) -> None: ...

class ListPlacementGroupsReply(_message.Message):
    __slots__ = ("pgs",)
    PGS_FIELD_NUMBER: _ClassVar[int]
    pgs: _containers.RepeatedCompositeFieldContainer[_common_pb2.PlacementGroupInfo]
    def __init__(self, pgs: _Optional[_Iterable[_Union[_common_pb2.PlacementGroupInfo, _Mapping]]] = ...) -> None: ...

class PlacementGroupIdRequest(_message.Message):
    __slots__ = ("pg_id",)
    PG_ID_FIELD_NUMBER: _ClassVar[int]
    pg_id: str
    def __init__(self, pg_id: _Optional[str] = ...) -> None: ...

class DrainNodeRequest(_message.Message):
    __slots__ = ("node_id", "deadline_s", "force", "reason", "idle_only")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IDLE_ONLY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    deadline_s: float
    force: bool
    reason: str
    idle_only: bool
    def __init__(self, node_id: _Optional[str] = ..., deadline_s: _Optional[float] = ..., force: _Optional[bool] = ..., reason: _Optional[str] = ..., idle_only: _Optional[bool] = ...) -> None: ...

class DrainNodeReply(_message.Message):
    __slots__ = ("accepted", "reason")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class AddTaskEventsRequest(_message.Message):
    __slots__ = ("events", "dropped")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_common_pb2.TaskEvent]
    dropped: int
    def __init__(self, events: _Optional[_Iterable[_Union[_common_pb2.TaskEvent, _Mapping]]] = ..., dropped: _Optional[int] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("limit", "summarize")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SUMMARIZE_FIELD_NUMBER: _ClassVar[int]
    limit: int
    summarize: bool
    def __init__(self, limit: _Optional[int] = ..., summarize: _Optional[bool] = ...) -> None: ...

class TaskGroup(_message.Message):
    __slots__ = ("name", "type", "by_status", "retries")
    class ByStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: _common_pb2.TaskEvent.Type
    by_status: _containers.ScalarMap[int, int]
    retries: int
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[_common_pb2.TaskEvent.Type, str]] = ..., by_status: _Optional[_Mapping[int, int]] = ..., retries: _Optional[int] = ...) -> None: ...

class ListTasksReply(_message.Message):
    __slots__ = ("tasks", "total", "dropped", "by_status", "groups")
    class ByStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    TASKS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_common_pb2.TaskEvent]
    total: int
    dropped: int
    by_status: _containers.ScalarMap[int, int]
    groups: _containers.RepeatedCompositeFieldContainer[TaskGroup]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_common_pb2.TaskEvent, _Mapping]]] = ..., total: _Optional[int] = ..., dropped: _Optional[int] = ..., by_status: _Optional[_Mapping[int, int]] = ..., groups: _Optional[_Iterable[_Union[TaskGroup, _Mapping]]] = ...) -> None: ...
