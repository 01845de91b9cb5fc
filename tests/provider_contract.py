"""The contract every node provider keeps, as one reusable test class.

A provider's test file plugs in by subclassing `ProviderContract` as `Test<Name>Contract` and
defining the `provider_factory` fixture (see its docstring); AWS and GCP reuse it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from providers.base import (
    NODE_KIND_WORKER,
    TAG_CLUSTER,
    TAG_NODE_KIND,
    TAG_NODE_TYPE,
    TAG_REQUEST_ID,
    CapacityError,
    CommandResult,
    Instance,
    NodeProvider,
    Offering,
    ProviderState,
)

# factory(cluster_name) -> a provider for that cluster that sees the same cloud as every other
# provider the factory made for the same name (a new object, as after a monitor restart).
ProviderFactory = Callable[[str], Any]
# factory(cluster_name, capacity) -> a provider whose first offering of `node_type` can give only
# `capacity` more instances; None when the provider has no capacity model to set.
LimitedFactory = Callable[[str, int], Any] | None

CLUSTER = "contract"
LIVE_STATES = {ProviderState.PENDING, ProviderState.RUNNING}


class ProviderContract:
    """Subclasses set `node_type` and `expected_offerings`, and define the fixtures
    `provider_factory` (ProviderFactory) and `limited_factory` (LimitedFactory)."""

    node_type: str = "worker"
    expected_offerings: list[Offering] = []

    # --- helpers ---------------------------------------------------------------------------

    def launch(
        self, provider: NodeProvider, count: int, request_id: str, **kwargs: Any
    ) -> list[Instance]:
        offering = provider.offerings(self.node_type)[0]
        tags = {TAG_NODE_KIND: NODE_KIND_WORKER, "team": "contract"}
        return provider.launch(self.node_type, offering, count, request_id, tags=tags, **kwargs)

    @staticmethod
    def ids(instances: list[Instance]) -> set[str]:
        return {i.id for i in instances}

    # --- the contract ----------------------------------------------------------------------

    def test_provider_satisfies_the_protocol(self, provider_factory: ProviderFactory) -> None:
        provider = provider_factory(CLUSTER)
        assert isinstance(provider, NodeProvider)

    def test_bootstrap_is_idempotent(self, provider_factory: ProviderFactory) -> None:
        provider = provider_factory(CLUSTER)
        assert provider.bootstrap() == provider.bootstrap()

    def test_offerings_follow_the_config_order(self, provider_factory: ProviderFactory) -> None:
        provider = provider_factory(CLUSTER)
        assert provider.offerings(self.node_type) == self.expected_offerings

    def test_launch_returns_tagged_instances(self, provider_factory: ProviderFactory) -> None:
        provider = provider_factory(CLUSTER)
        offering = provider.offerings(self.node_type)[0]
        instances = self.launch(provider, 2, "req-tags")
        assert len(self.ids(instances)) == 2
        for instance in instances:
            assert instance.node_type == self.node_type
            assert instance.offering == offering
            assert instance.state in LIVE_STATES
            assert instance.tags[TAG_CLUSTER] == CLUSTER
            assert instance.tags[TAG_NODE_TYPE] == self.node_type
            assert instance.tags[TAG_REQUEST_ID] == "req-tags"
            assert instance.tags[TAG_NODE_KIND] == NODE_KIND_WORKER
            assert instance.tags["team"] == "contract"

    def test_launch_of_zero_launches_nothing(self, provider_factory: ProviderFactory) -> None:
        provider = provider_factory(CLUSTER)
        assert self.launch(provider, 0, "req-zero") == []
        assert provider.list_instances() == []

    def test_relaunch_with_same_request_id_returns_same_instances(
        self, provider_factory: ProviderFactory
    ) -> None:
        first = self.launch(provider_factory(CLUSTER), 2, "req-retry")
        # A retry from a restarted monitor: a fresh provider object, the same request id.
        again = self.launch(provider_factory(CLUSTER), 2, "req-retry")
        assert self.ids(again) == self.ids(first)
        assert self.ids(provider_factory(CLUSTER).list_instances()) == self.ids(first)

    def test_list_shows_launched_instances(self, provider_factory: ProviderFactory) -> None:
        provider = provider_factory(CLUSTER)
        launched = self.launch(provider, 1, "req-a") + self.launch(provider, 2, "req-b")
        listed = provider_factory(CLUSTER).list_instances()
        assert self.ids(listed) == self.ids(launched)
        assert all(i.state in LIVE_STATES for i in listed)

    def test_list_excludes_other_clusters(self, provider_factory: ProviderFactory) -> None:
        mine = self.launch(provider_factory(CLUSTER), 1, "req-mine")
        theirs = self.launch(provider_factory("other"), 1, "req-theirs")
        assert self.ids(provider_factory(CLUSTER).list_instances()) == self.ids(mine)
        assert self.ids(provider_factory("other").list_instances()) == self.ids(theirs)

    def test_terminate_removes_instances(self, provider_factory: ProviderFactory) -> None:
        provider = provider_factory(CLUSTER)
        keep, drop = self.launch(provider, 1, "req-keep"), self.launch(provider, 2, "req-drop")
        provider.terminate([i.id for i in drop])
        assert self.ids(provider.list_instances()) == self.ids(keep)
        assert self.ids(provider_factory(CLUSTER).list_instances()) == self.ids(keep)

    def test_terminate_of_unknown_or_gone_ids_is_success(
        self, provider_factory: ProviderFactory
    ) -> None:
        provider = provider_factory(CLUSTER)
        instances = self.launch(provider, 1, "req-twice")
        provider.terminate([i.id for i in instances])
        provider.terminate([i.id for i in instances])  # already gone
        provider.terminate(["no-such-instance"])
        provider.terminate([])
        assert provider.list_instances() == []

    def test_request_id_of_terminated_instances_launches_anew(
        self, provider_factory: ProviderFactory
    ) -> None:
        provider = provider_factory(CLUSTER)
        first = self.launch(provider, 1, "req-reuse")
        provider.terminate([i.id for i in first])
        second = self.launch(provider, 1, "req-reuse")
        assert len(second) == 1 and self.ids(second).isdisjoint(self.ids(first))

    def test_command_runner_runs_commands(self, provider_factory: ProviderFactory) -> None:
        provider = provider_factory(CLUSTER)
        (instance,) = self.launch(provider, 1, "req-runner")
        runner = provider.command_runner(instance)
        runner.wait_ready(timeout_s=5)
        result = runner.run("true")
        assert isinstance(result, CommandResult) and result.exit_code == 0

    def test_all_or_nothing_without_capacity_leaves_nothing(
        self, limited_factory: LimitedFactory
    ) -> None:
        if limited_factory is None:
            pytest.skip("this provider has no capacity limit to set")
        provider = limited_factory(CLUSTER, 2)
        with pytest.raises(CapacityError) as caught:
            self.launch(provider, 3, "req-aon", all_or_nothing=True)
        assert caught.value.offering == provider.offerings(self.node_type)[0]
        assert provider.list_instances() == []
        # Without all_or_nothing the same request takes what there is.
        assert len(self.launch(provider, 3, "req-partial")) == 2
