from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Versions(_message.Message):
    __slots__ = ("python", "rayctl", "protocol")
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    RAYCTL_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    python: str
    rayctl: str
    protocol: int
    def __init__(self, python: _Optional[str] = ..., rayctl: _Optional[str] = ..., protocol: _Optional[int] = ...) -> None: ...

class ResourceMap(_message.Message):
    __slots__ = ("amounts",)
    class AmountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    AMOUNTS_FIELD_NUMBER: _ClassVar[int]
    amounts: _containers.ScalarMap[str, float]
    def __init__(self, amounts: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ShapeCount(_message.Message):
    __slots__ = ("shape", "count", "infeasible", "kind")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[ShapeCount.Kind]
        TASK: _ClassVar[ShapeCount.Kind]
        ACTOR: _ClassVar[ShapeCount.Kind]
    KIND_UNSPECIFIED: ShapeCount.Kind
    TASK: ShapeCount.Kind
    ACTOR: ShapeCount.Kind
    class ShapeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INFEASIBLE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.ScalarMap[str, float]
    count: int
    infeasible: bool
    kind: ShapeCount.Kind
    def __init__(self, shape: _Optional[_Mapping[str, float]] = ..., count: _Optional[int] = ..., infeasible: _Optional[bool] = ..., kind: _Optional[_Union[ShapeCount.Kind, str]] = ...) -> None: ...

class NodeDrain(_message.Message):
    __slots__ = ("reason", "started_at", "deadline", "force", "drained", "leases", "actors", "objects")
    REASON_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    ACTORS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    started_at: float
    deadline: float
    force: bool
    drained: bool
    leases: int
    actors: int
    objects: int
    def __init__(self, reason: _Optional[str] = ..., started_at: _Optional[float] = ..., deadline: _Optional[float] = ..., force: _Optional[bool] = ..., drained: _Optional[bool] = ..., leases: _Optional[int] = ..., actors: _Optional[int] = ..., objects: _Optional[int] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "address", "raylet_port", "local_port", "data_port", "shm_dir", "total", "available", "instance_id", "node_type", "idle_since", "last_heartbeat", "is_head", "death_reason", "versions", "labels", "state", "drain")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[NodeInfo.State]
        ALIVE: _ClassVar[NodeInfo.State]
        DRAINING: _ClassVar[NodeInfo.State]
        DEAD: _ClassVar[NodeInfo.State]
    STATE_UNSPECIFIED: NodeInfo.State
    ALIVE: NodeInfo.State
    DRAINING: NodeInfo.State
    DEAD: NodeInfo.State
    class TotalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class AvailableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RAYLET_PORT_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PORT_FIELD_NUMBER: _ClassVar[int]
    DATA_PORT_FIELD_NUMBER: _ClassVar[int]
    SHM_DIR_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_TYPE_FIELD_NUMBER: _ClassVar[int]
    IDLE_SINCE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    IS_HEAD_FIELD_NUMBER: _ClassVar[int]
    DEATH_REASON_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    raylet_port: int
    local_port: int
    data_port: int
    shm_dir: str
    total: _containers.ScalarMap[str, float]
    available: _containers.ScalarMap[str, float]
    instance_id: str
    node_type: str
    idle_since: float
    last_heartbeat: float
    is_head: bool
    death_reason: str
    versions: Versions
    labels: _containers.ScalarMap[str, str]
    state: NodeInfo.State
    drain: NodeDrain
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., raylet_port: _Optional[int] = ..., local_port: _Optional[int] = ..., data_port: _Optional[int] = ..., shm_dir: _Optional[str] = ..., total: _Optional[_Mapping[str, float]] = ..., available: _Optional[_Mapping[str, float]] = ..., instance_id: _Optional[str] = ..., node_type: _Optional[str] = ..., idle_since: _Optional[float] = ..., last_heartbeat: _Optional[float] = ..., is_head: _Optional[bool] = ..., death_reason: _Optional[str] = ..., versions: _Optional[_Union[Versions, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., state: _Optional[_Union[NodeInfo.State, str]] = ..., drain: _Optional[_Union[NodeDrain, _Mapping]] = ...) -> None: ...

class ActorInfo(_message.Message):
    __slots__ = ("actor_id", "name", "namespace", "address", "node_id", "num_restarts", "max_restarts", "detached", "death_cause", "version", "creation_spec", "resources", "job_id", "class_name", "owner_address", "pid", "affinity_node_id", "affinity_soft", "spread", "runtime_env_json", "state")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[ActorInfo.State]
        PENDING: _ClassVar[ActorInfo.State]
        ALIVE: _ClassVar[ActorInfo.State]
        RESTARTING: _ClassVar[ActorInfo.State]
        DEAD: _ClassVar[ActorInfo.State]
    STATE_UNSPECIFIED: ActorInfo.State
    PENDING: ActorInfo.State
    ALIVE: ActorInfo.State
    RESTARTING: ActorInfo.State
    DEAD: ActorInfo.State
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    DETACHED_FIELD_NUMBER: _ClassVar[int]
    DEATH_CAUSE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATION_SPEC_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_SOFT_FIELD_NUMBER: _ClassVar[int]
    SPREAD_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_ENV_JSON_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    name: str
    namespace: str
    address: str
    node_id: str
    num_restarts: int
    max_restarts: int
    detached: bool
    death_cause: str
    version: int
    creation_spec: bytes
    resources: _containers.ScalarMap[str, float]
    job_id: str
    class_name: str
    owner_address: str
    pid: int
    affinity_node_id: str
    affinity_soft: bool
    spread: bool
    runtime_env_json: str
    state: ActorInfo.State
    def __init__(self, actor_id: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., address: _Optional[str] = ..., node_id: _Optional[str] = ..., num_restarts: _Optional[int] = ..., max_restarts: _Optional[int] = ..., detached: _Optional[bool] = ..., death_cause: _Optional[str] = ..., version: _Optional[int] = ..., creation_spec: _Optional[bytes] = ..., resources: _Optional[_Mapping[str, float]] = ..., job_id: _Optional[str] = ..., class_name: _Optional[str] = ..., owner_address: _Optional[str] = ..., pid: _Optional[int] = ..., affinity_node_id: _Optional[str] = ..., affinity_soft: _Optional[bool] = ..., spread: _Optional[bool] = ..., runtime_env_json: _Optional[str] = ..., state: _Optional[_Union[ActorInfo.State, str]] = ...) -> None: ...

class Bundle(_message.Message):
    __slots__ = ("index", "resources")
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    index: int
    resources: _containers.ScalarMap[str, float]
    def __init__(self, index: _Optional[int] = ..., resources: _Optional[_Mapping[str, float]] = ...) -> None: ...

class PlacementGroupInfo(_message.Message):
    __slots__ = ("pg_id", "name", "namespace", "bundles", "bundle_node_ids", "version", "job_id", "detached", "created_at", "strategy", "state")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[PlacementGroupInfo.State]
        PENDING: _ClassVar[PlacementGroupInfo.State]
        CREATED: _ClassVar[PlacementGroupInfo.State]
        REMOVED: _ClassVar[PlacementGroupInfo.State]
    STATE_UNSPECIFIED: PlacementGroupInfo.State
    PENDING: PlacementGroupInfo.State
    CREATED: PlacementGroupInfo.State
    REMOVED: PlacementGroupInfo.State
    class Strategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STRATEGY_UNSPECIFIED: _ClassVar[PlacementGroupInfo.Strategy]
        PACK: _ClassVar[PlacementGroupInfo.Strategy]
        SPREAD: _ClassVar[PlacementGroupInfo.Strategy]
        STRICT_PACK: _ClassVar[PlacementGroupInfo.Strategy]
        STRICT_SPREAD: _ClassVar[PlacementGroupInfo.Strategy]
    STRATEGY_UNSPECIFIED: PlacementGroupInfo.Strategy
    PACK: PlacementGroupInfo.Strategy
    SPREAD: PlacementGroupInfo.Strategy
    STRICT_PACK: PlacementGroupInfo.Strategy
    STRICT_SPREAD: PlacementGroupInfo.Strategy
    PG_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    BUNDLES_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DETACHED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    pg_id: str
    name: str
    namespace: str
    bundles: _containers.RepeatedCompositeFieldContainer[Bundle]
    bundle_node_ids: _containers.RepeatedScalarFieldContainer[str]
    version: int
    job_id: str
    detached: bool
    created_at: float
    strategy: PlacementGroupInfo.Strategy
    state: PlacementGroupInfo.State
    def __init__(self, pg_id: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., bundles: _Optional[_Iterable[_Union[Bundle, _Mapping]]] = ..., bundle_node_ids: _Optional[_Iterable[str]] = ..., version: _Optional[int] = ..., job_id: _Optional[str] = ..., detached: _Optional[bool] = ..., created_at: _Optional[float] = ..., strategy: _Optional[_Union[PlacementGroupInfo.Strategy, str]] = ..., state: _Optional[_Union[PlacementGroupInfo.State, str]] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("task_id", "attempt", "name", "status", "type", "job_id", "actor_id", "parent_task_id", "node_id", "worker_id", "error_type", "error_message", "submitted_at", "started_at", "ended_at", "resources")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[TaskEvent.Status]
        PENDING_ARGS_AVAIL: _ClassVar[TaskEvent.Status]
        PENDING_NODE_ASSIGNMENT: _ClassVar[TaskEvent.Status]
        SUBMITTED_TO_WORKER: _ClassVar[TaskEvent.Status]
        RUNNING: _ClassVar[TaskEvent.Status]
        FINISHED: _ClassVar[TaskEvent.Status]
        FAILED: _ClassVar[TaskEvent.Status]
    STATUS_UNSPECIFIED: TaskEvent.Status
    PENDING_ARGS_AVAIL: TaskEvent.Status
    PENDING_NODE_ASSIGNMENT: TaskEvent.Status
    SUBMITTED_TO_WORKER: TaskEvent.Status
    RUNNING: TaskEvent.Status
    FINISHED: TaskEvent.Status
    FAILED: TaskEvent.Status
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[TaskEvent.Type]
        NORMAL_TASK: _ClassVar[TaskEvent.Type]
        ACTOR_TASK: _ClassVar[TaskEvent.Type]
    TYPE_UNSPECIFIED: TaskEvent.Type
    NORMAL_TASK: TaskEvent.Type
    ACTOR_TASK: TaskEvent.Type
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    name: str
    status: TaskEvent.Status
    type: TaskEvent.Type
    job_id: str
    actor_id: str
    parent_task_id: str
    node_id: str
    worker_id: str
    error_type: str
    error_message: str
    submitted_at: float
    started_at: float
    ended_at: float
    resources: _containers.ScalarMap[str, float]
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., name: _Optional[str] = ..., status: _Optional[_Union[TaskEvent.Status, str]] = ..., type: _Optional[_Union[TaskEvent.Type, str]] = ..., job_id: _Optional[str] = ..., actor_id: _Optional[str] = ..., parent_task_id: _Optional[str] = ..., node_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., error_type: _Optional[str] = ..., error_message: _Optional[str] = ..., submitted_at: _Optional[float] = ..., started_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., resources: _Optional[_Mapping[str, float]] = ...) -> None: ...
