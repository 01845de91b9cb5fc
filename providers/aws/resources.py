"""Resource autofill: CPU, memory, GPUs and accelerator_type:<model> of EC2 instance types, read
from DescribeInstanceTypes, for node types whose config leaves `resources` out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# As Ray does: 30% of a node's memory goes to the object store, the rest is the `memory`
# resource tasks reserve from, so the numbers match what a Ray user expects.
OBJECT_STORE_MEMORY_FRACTION = 0.3


def resources_of(info: Mapping[str, Any]) -> dict[str, float]:
    """The rayctl resources of one DescribeInstanceTypes entry."""
    memory_bytes = float(info["MemoryInfo"]["SizeInMiB"]) * 1024 * 1024
    resources: dict[str, float] = {
        "CPU": float(info["VCpuInfo"]["DefaultVCpus"]),
        "memory": float(int(memory_bytes * (1 - OBJECT_STORE_MEMORY_FRACTION))),
    }
    gpus = info.get("GpuInfo", {}).get("Gpus", [])
    gpu_count = sum(_gpu_count(gpu) for gpu in gpus)
    if gpu_count:
        resources["GPU"] = gpu_count
        # One model per type in practice; Ray names the resource after the model.
        resources[f"accelerator_type:{gpus[0]['Name']}"] = 1.0
    neuron = info.get("NeuronInfo", {}).get("NeuronDevices", [])
    cores = sum(d.get("Count", 0) * d.get("CoreInfo", {}).get("Count", 0) for d in neuron)
    if cores:
        resources["neuron_cores"] = float(cores)
        resources["accelerator_type:aws-neuron-core"] = 1.0
    return resources


def _gpu_count(gpu: Mapping[str, Any]) -> float:
    # Fractional GPU types (g6f) report Count 0 and a partition size per logical GPU.
    if gpu.get("Count"):
        return float(gpu["Count"])
    return float(gpu.get("LogicalGpuCount", 0)) * float(gpu.get("GpuPartitionSize", 0))


def common_resources(per_type: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """What every listed instance type is sure to offer: the minimum of each resource all of
    them have, so a node type listing several types is never planned bigger than it comes."""
    result: dict[str, float] | None = None
    for resources in per_type:
        if result is None:
            result = dict(resources)
        else:
            result = {k: min(v, resources[k]) for k, v in result.items() if k in resources}
    return result or {}
