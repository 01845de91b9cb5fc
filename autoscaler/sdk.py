"""The autoscaler SDK, as Ray's `ray.autoscaler.sdk`: `request_resources()` (a standing request,
replaced by the next call, that the autoscaler satisfies as if the cluster were idle) and
`get_status()`. Both go through the GCS's authenticated KV, never to Redis directly."""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from autoscaler.status import ClusterStatus
from runtime.gcs.schema import KvKey, KvNamespace
from runtime.resources import check_resources

if TYPE_CHECKING:
    from runtime.auth import Credentials

GcsCall = Callable[[str, Any], Any]


MAX_REQUESTED_BUNDLES = 100_000  # a list that size is ~10 MB of JSON in the GCS


def request_resources(
    num_cpus: int | None = None,
    bundles: Sequence[Mapping[str, float]] | None = None,
    *,
    address: str | None = None,
    token: str | None = None,
) -> None:
    """Ask the autoscaler to keep room for `num_cpus` one-CPU bundles plus `bundles`, at once
    and regardless of current load. Replaces the previous request; `request_resources(0)` (or
    no argument) clears it. Connects through the driver when `runtime.init()` was called, else
    to `address` ("auto", host:port, or $RAYCTL_ADDRESS) with `token` (or $RAYCTL_TOKEN_FILE)."""
    wanted = _bundles(num_cpus, bundles)
    from runtime.protocol import gcs_pb2

    request = gcs_pb2.KvRequest(
        ns=KvNamespace.AUTOSCALER, key=KvKey.RESOURCE_REQUESTS, value=json.dumps(wanted).encode(),
        overwrite=True,
    )
    with _gcs(address, token) as call:
        call("KvPut", request)


def get_status(*, address: str | None = None, token: str | None = None) -> ClusterStatus:
    """The status the autoscaler monitor wrote in its latest round."""
    from runtime.protocol import gcs_pb2

    with _gcs(address, token) as call:
        reply = call("KvGet", gcs_pb2.KvRequest(ns=KvNamespace.AUTOSCALER_STATUS, key=KvKey.STATUS))
    if not reply.found:
        raise LookupError(
            "the cluster has no autoscaler status: is the monitor running? (start the head with "
            "`rayctl start --head --autoscaling-config FILE`)"
        )
    try:
        return ClusterStatus.from_json(reply.value)
    except ValueError as exc:  # another version's monitor wrote it: a status we cannot find
        raise LookupError(str(exc)) from exc


def _bundles(
    num_cpus: int | None, bundles: Sequence[Mapping[str, float]] | None
) -> list[dict[str, float]]:
    if num_cpus is not None and (
        isinstance(num_cpus, bool) or not isinstance(num_cpus, numbers.Integral)
        or not 0 <= num_cpus <= MAX_REQUESTED_BUNDLES
    ):
        raise ValueError(
            f"num_cpus must be a whole number from 0 to {MAX_REQUESTED_BUNDLES:,}, got {num_cpus!r}"
        )
    out = [{"CPU": 1.0}] * int(num_cpus or 0)
    bundles = list(bundles or [])
    if len(out) + len(bundles) > MAX_REQUESTED_BUNDLES:
        raise ValueError(
            f"request_resources asks for {len(out) + len(bundles):,} bundles; at most "
            f"{MAX_REQUESTED_BUNDLES:,} (ask for bigger bundles instead)"
        )
    for i, bundle in enumerate(bundles):
        if not isinstance(bundle, Mapping) or not bundle:
            raise ValueError(
                f"bundles[{i}] must be a non-empty dict like {{'CPU': 2}}, got {bundle!r}"
            )
        out.append(check_resources(f"bundles[{i}]", bundle))
    return out


@contextmanager
def _gcs(address: str | None, token: str | None) -> Iterator[GcsCall]:
    """A GCS caller: the connected driver's, else a channel of our own."""
    import runtime

    if address is None and runtime.is_initialized():
        from runtime.api import _core

        core = _core()
        yield lambda method, request: core.gcs_call(method, request, timeout=10)
        return
    import grpc

    from runtime.grpc_auth import open_channel
    from runtime.protocol import gcs_pb2_grpc

    gcs_address, credentials = resolve_address(address, token)
    with open_channel(gcs_address, credentials.token, tls=credentials.tls) as channel:
        stub = gcs_pb2_grpc.GcsStub(channel)

        def call(method: str, request: Any) -> Any:
            try:
                return getattr(stub, method)(request, timeout=10)
            except grpc.RpcError as exc:
                raise ConnectionError(
                    f"cannot reach the cluster at {gcs_address}: {exc.details()}"
                ) from None

        yield call


def resolve_address(address: str | None, token: str | None) -> tuple[str, Credentials]:
    """GCS address and credentials: explicit, else the environment, else this machine's
    cluster."""
    from runtime.auth import Credentials, credentials_from_env, read_credentials
    from runtime.node import choose_local_cluster

    address = address or os.environ.get("RAYCTL_ADDRESS") or "auto"
    local = choose_local_cluster(address)  # "auto", a `rayctl up` name, or an address here
    if local is not None:
        address = local.address
    credentials = (Credentials(token) if token else None) or credentials_from_env()
    if not credentials and local is not None:
        credentials = read_credentials(local.token_file)
    if not credentials:
        raise ConnectionError(
            f"no cluster token for {address}: set RAYCTL_TOKEN_FILE to the cluster's token file"
        )
    return address, credentials
