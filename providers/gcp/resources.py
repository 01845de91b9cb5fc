"""Resource autofill: CPU, memory and GPUs of a node type from `machineTypes.get` and its
accelerator configs, for cluster YAMLs that leave `resources` out."""

from __future__ import annotations

from typing import Any

from providers.gcp.config import GCPNodeConfig

# Ray's convention: the object store takes 30% of memory, the `memory` resource the rest.
MEMORY_RESOURCE_FRACTION = 0.7

# GCE accelerator type -> the model name in `accelerator_type:<model>` (Ray's names).
ACCELERATOR_MODELS = {
    "nvidia-tesla-t4": "T4",
    "nvidia-tesla-p4": "P4",
    "nvidia-tesla-p100": "P100",
    "nvidia-tesla-v100": "V100",
    "nvidia-tesla-k80": "K80",
    "nvidia-tesla-a100": "A100",
    "nvidia-a100-80gb": "A100-80G",
    "nvidia-l4": "L4",
    "nvidia-h100-80gb": "H100",
    "nvidia-h100-mega-80gb": "H100",
    "nvidia-h200-141gb": "H200",
}


def accelerator_model(accelerator_type: str) -> str:
    """`nvidia-tesla-t4` -> `T4`; unknown types keep their name without the vendor prefix."""
    short = accelerator_type.rsplit("/", 1)[-1]
    if short in ACCELERATOR_MODELS:
        return ACCELERATOR_MODELS[short]
    for prefix in ("nvidia-tesla-", "nvidia-"):
        if short.startswith(prefix):
            return short[len(prefix):].upper()
    return short.upper()


def resources_from(machine_type: Any, node_config: GCPNodeConfig) -> dict[str, float]:
    """Resources of a compute_v1 MachineType plus the node config's attached GPUs.

    Machine types with built-in GPUs (a2, a3, g2) list them in `accelerators`; attached ones
    come from `guestAccelerators`. A node carries one GPU model, so the first one names it.
    """
    resources: dict[str, float] = {
        "CPU": float(machine_type.guest_cpus),
        "memory": float(int(machine_type.memory_mb * 2**20 * MEMORY_RESOURCE_FRACTION)),
    }
    gpus: list[tuple[str, int]] = [
        (a.guest_accelerator_type, a.guest_accelerator_count) for a in machine_type.accelerators
    ]
    gpus += [(a.short_type, a.acceleratorCount) for a in node_config.guestAccelerators]
    total = sum(count for _, count in gpus)
    if total:
        resources["GPU"] = float(total)
        resources[f"accelerator_type:{accelerator_model(gpus[0][0])}"] = 1.0
    return resources
