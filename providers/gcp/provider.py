"""GCPProvider: the NodeProvider for Google Compute Engine, assembled from this package's parts
(bootstrap, launch, instances, resources) around one set of REST clients."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError

from providers.base import (
    CommandRunner,
    ConfigError,
    Instance,
    Market,
    Offering,
)
from providers.gcp.bootstrap import Bootstrapper, read_public_key
from providers.gcp.clients import (
    CALL_TIMEOUT_S,
    NO_RETRY,
    ComputeClients,
    OperationWaiter,
    make_clients,
)
from providers.gcp.config import GCPNodeConfig, GCPProviderConfig
from providers.gcp.errors import gcp_errors
from providers.gcp.instances import InstanceRegistry
from providers.gcp.launch import LaunchContext, Launcher
from providers.gcp.resources import resources_from
from providers.gcp.self_delete import PERMISSION as SELF_DELETE_PERMISSION
from providers.login import cloud_login

log = structlog.get_logger("providers.gcp")


def validate(model: type[BaseModel], data: Mapping[str, Any], where: str) -> Any:
    """Validate a config section; every problem is listed with its path."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{where}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" if err["loc"]
            else f"{where}: {err['msg']}"
            for err in exc.errors())
        raise ConfigError(problems) from None


class GCPProvider:
    """Allocates GCE VMs for one cluster. See providers/base.py for each method's contract.

    `api_endpoint` and `credentials` go to the Compute clients (a private endpoint; a test's
    fake server with anonymous credentials); None: Google's endpoint and the application
    default credentials. `command_runner_factory` replaces the SSH runner of each instance.
    A subclass may extend `config_model`: the section is validated with the class's model."""

    config_model: type[GCPProviderConfig] = GCPProviderConfig
    node_config_model = GCPNodeConfig
    #: nodes talk over networks the cluster does not own: `up` starts the head with --tls
    tls_by_default = True

    def __init__(self, cluster_name: str, provider_config: Mapping[str, Any],
                 node_types: Mapping[str, Mapping[str, Any]], *,
                 auth: Mapping[str, Any] | None = None,
                 api_endpoint: str | None = None,
                 credentials: Any | None = None,
                 command_runner_factory: Callable[[Instance], CommandRunner] | None = None,
                 ) -> None:
        self.cluster_name = cluster_name
        self.config: GCPProviderConfig = validate(self.config_model, provider_config, "provider")
        self._node_types = dict(node_types)
        self._node_configs: dict[str, GCPNodeConfig] = {
            name: validate(GCPNodeConfig, entry.get("node_config") or {},
                           f"available_node_types.{name}.node_config")
            for name, entry in node_types.items()
        }
        self._api_endpoint, self._credentials = api_endpoint, credentials
        self._runner_factory = command_runner_factory or self._ssh_runner
        self.login = self._login(auth)
        self._lock = threading.Lock()
        self._parts: tuple[ComputeClients, OperationWaiter, InstanceRegistry, Launcher] | None = None
        self._resources: dict[str, dict[str, float]] = {}

    # --- NodeProvider ---------------------------------------------------------------------

    def bootstrap(self) -> dict[str, Any]:
        clients, waiter, _, _ = self._wired()
        resolved = Bootstrapper(self.cluster_name, self.config, clients, waiter).run()
        without = [n for n, c in self._node_configs.items() if "serviceAccounts" not in c.passthrough()]
        if without:
            log.warning(
                "gcp.no_worker_service_account", node_types=without,
                consequence=f"a worker of these types whose head is lost cannot delete its VM "
                f"(needs {SELF_DELETE_PERMISSION} on itself) and powers off instead",
                fix="give them node_config.serviceAccounts with that permission")
        return resolved

    def offerings(self, node_type: str) -> list[Offering]:
        """Preferred machine type first, across the zones; then the next machine type."""
        node_config = self._node_config(node_type)
        zones = node_config.zones or self.config.availability_zone
        market = Market.SPOT if node_config.is_spot else Market.ON_DEMAND
        return [Offering(machine_type, zone, market)
                for machine_type in node_config.machineType for zone in zones]

    def node_resources(self, node_type: str) -> dict[str, float]:
        if node_type not in self._resources:
            offering = self.offerings(node_type)[0]
            clients, _, _, _ = self._wired()
            with gcp_errors(f"look up machine type {offering.instance_type} in {offering.zone}"):
                machine_type = clients.machine_types.get(
                    project=self.config.project_id, zone=offering.zone,
                    machine_type=offering.instance_type, timeout=CALL_TIMEOUT_S, retry=NO_RETRY)
            self._resources[node_type] = resources_from(machine_type,
                                                        self._node_config(node_type))
        return dict(self._resources[node_type])

    def launch(self, node_type: str, offering: Offering, count: int, request_id: str, *,
               tags: Mapping[str, str] | None = None,
               all_or_nothing: bool = False) -> list[Instance]:
        if count < 1:
            return []
        _, _, _, launcher = self._wired()
        return launcher.launch(node_type, self._node_config(node_type), offering, count,
                               request_id, dict(tags or {}), all_or_nothing)

    def terminate(self, instance_ids: Sequence[str]) -> None:
        _, _, registry, _ = self._wired()
        registry.delete(list(instance_ids))

    def list_instances(self) -> list[Instance]:
        _, _, registry, _ = self._wired()
        return registry.list_cluster()

    def command_runner(self, instance: Instance) -> CommandRunner:
        return self._runner_factory(instance)

    def purge(self) -> None:
        clients, waiter, _, _ = self._wired()
        Bootstrapper(self.cluster_name, self.config, clients, waiter).purge()

    def end_machine_command(self, node_type: str) -> str | None:
        # The VM deletes itself with its service account (self_delete.py); a VM whose account
        # may not do that powers off instead (a stopped VM bills its disks only).
        return "python3 -m providers.gcp.self_delete || sudo shutdown -h now"

    def _ssh_runner(self, instance: Instance) -> CommandRunner:
        from providers.ssh import runner_for

        internal = self.config.use_internal_ips
        host = instance.internal_ip if internal else (instance.external_ip or instance.internal_ip)
        return runner_for(host, self.login)

    def _login(self, auth: Mapping[str, Any] | None) -> dict[str, str]:
        """auth: first; then provider.ssh_private_key, or the private half of a .pub path."""
        cfg = self.config
        key = cfg.ssh_private_key
        if not key and cfg.ssh_public_key and cfg.ssh_public_key.endswith(".pub"):
            key = cfg.ssh_public_key[: -len(".pub")]
        return cloud_login(auth, provider_user=cfg.ssh_user, provider_key=key)

    # --- wiring ---------------------------------------------------------------------------

    def _node_config(self, node_type: str) -> GCPNodeConfig:
        try:
            return self._node_configs[node_type]
        except KeyError:
            known = ", ".join(sorted(self._node_configs)) or "none"
            raise ConfigError(f"unknown node type {node_type!r}; known: {known}") from None

    def _wired(self) -> tuple[ComputeClients, OperationWaiter, InstanceRegistry, Launcher]:
        """Build the clients on first use (imports the SDK), then reuse them."""
        with self._lock:
            if self._parts is None:
                with gcp_errors("create Compute API clients"):
                    clients = make_clients(self._api_endpoint, self._credentials)
                project = self.config.project_id
                waiter = OperationWaiter(clients, project, self.config.operation_timeout_s)
                registry = InstanceRegistry(self.cluster_name, project, clients, waiter)
                # the `ssh-keys` metadata is for the login the runners use
                as_login = self.config.model_copy(update={"ssh_user": self.login["ssh_user"]})
                ctx = LaunchContext(self.cluster_name, as_login,
                                    read_public_key(self.config.ssh_public_key))
                self._parts = (clients, waiter, registry, Launcher(ctx, clients, waiter, registry))
            return self._parts
