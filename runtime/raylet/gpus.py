"""Which GPUs of a node a lease or an actor gets, as Ray does: the node's `GPU` resource counts
them, this picks the devices, and the worker sets CUDA_VISIBLE_DEVICES to them while the task
(or for the actor's whole life) runs, so two one-GPU tasks on a two-GPU node never share one.

A request of n >= 1 GPUs takes n whole free devices; a fraction takes part of one device (the
fullest that still fits, so fractions pack together). Device ids are 0..n-1, or the ids the
node's own CUDA_VISIBLE_DEVICES lists."""

from __future__ import annotations

EPSILON = 1e-9


class GpuSlots:
    def __init__(self, count: int, visible: str | None = None) -> None:
        listed = [d.strip() for d in (visible or "").split(",") if d.strip()]
        self.ids = listed[:count] if len(listed) >= count else [str(i) for i in range(count)]
        self.free = {device: 1.0 for device in self.ids}

    def assign(self, amount: float) -> tuple[str, ...] | None:
        """Devices for `amount` GPUs (() for none), or None if they are not free as a whole."""
        if amount <= EPSILON:
            return ()
        if amount < 1:
            fitting = [d for d in self.ids if self.free[d] + EPSILON >= amount]
            if not fitting:
                return None
            device = min(fitting, key=lambda d: self.free[d])
            self.free[device] -= amount
            return (device,)
        whole = [d for d in self.ids if self.free[d] >= 1 - EPSILON]
        need = int(round(amount))
        if len(whole) < need:
            return None
        for device in whole[:need]:
            self.free[device] = 0.0
        return tuple(whole[:need])

    def release(self, devices: tuple[str, ...], amount: float) -> None:
        share = amount / len(devices) if devices else 0.0
        for device in devices:
            self.free[device] = min(1.0, self.free[device] + share)


def gpu_amount(shape: dict[str, float]) -> float:
    """The GPUs a lease shape asks for: `GPU`, or inside a placement group its bundle's
    `GPU_group_<i>_<pg>` (one of the two; the `GPU_group_<pg>` wildcard counts the same)."""
    if "GPU" in shape:
        return shape["GPU"]
    return next((v for k, v in shape.items() if k.startswith("GPU_group_")), 0.0)
