"""One `adbench run` across the processes a launcher starts (torchrun, accelerate launch, srun + torchrun).

The launcher sets RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR / MASTER_PORT); a
plain `adbench run` has none of them and is a world of one process, for which nothing
here imports torch or opens a connection. With more than one process, `Group` joins
torch.distributed's default process group through its `env://` rendezvous: the gloo
backend on CPU machines, nccl where every local rank has its own GPU. The run uses it
for three things only, all small: rank 0's decisions broadcast to the others
(`from_main`), per-batch counts summed in lockstep (`sum`), and per-rank summaries
gathered at the end (`gather`). Every one of them waits at most `timeout_s` (the
process group's timeout): a rank that died or hangs fails the others instead of
leaving them waiting; the launcher then stops the job.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from adbench.errors import UserError

#: How long one process waits for the others at a collective (seconds): model loading, one batch, scoring.
DEFAULT_TIMEOUT_S = 1800.0

T = TypeVar("T")


class DistributedError(UserError):
    """A launcher environment adbench cannot use (a malformed RANK, a rank without its GPU), or a failed peer."""


@dataclass(frozen=True)
class World:
    """This process's place among the launched ones (RANK, WORLD_SIZE, LOCAL_RANK); one process when unset."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> World:
        env = os.environ if environ is None else environ

        def number(name: str, default: int) -> int:
            raw = env.get(name, "")
            if not raw.strip():
                return default
            try:
                value = int(raw)
            except ValueError:
                raise DistributedError(f"environment variable {name}={raw!r} is not a whole number "
                                       "(set by torchrun / accelerate launch)") from None
            if value < 0:
                raise DistributedError(f"environment variable {name}={raw!r} is negative")
            return value

        size = number("WORLD_SIZE", 1)
        if size <= 1:
            return cls(local_rank=number("LOCAL_RANK", 0))
        if not env.get("RANK", "").strip():
            raise DistributedError(f"WORLD_SIZE={size} without RANK: launch with torchrun or accelerate launch, "
                                   "which set both")
        rank = number("RANK", 0)
        if rank >= size:
            raise DistributedError(f"RANK={rank} is not below WORLD_SIZE={size}")
        return cls(rank, size, number("LOCAL_RANK", 0))


def local_rank() -> int | None:
    """LOCAL_RANK as a launcher set it (this process's GPU on its node), or None without a launcher."""
    if not os.environ.get("LOCAL_RANK", "").strip():
        return None
    return World.from_env().local_rank


class Group:
    """The processes of one run. A world of one process needs no process group: every call is local."""

    def __init__(self, world: World, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.world = world
        self.timeout_s = float(timeout_s)
        self.backend: str | None = None
        self._device: Any = None
        if world.size > 1:
            self._join()

    def _join(self) -> None:
        from datetime import timedelta

        import torch
        import torch.distributed as dist

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE") or self.world.size)
        if gpus and per_node <= gpus:
            self.backend = "nccl"
            torch.cuda.set_device(self.world.local_rank)
            self._device = torch.device("cuda", self.world.local_rank)
        else:  # CPU machines, or more processes per node than GPUs (CPU models): gloo, tensors on the CPU
            self.backend = "gloo"
            self._device = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group(self.backend, init_method="env://", rank=self.world.rank,
                                    world_size=self.world.size, timeout=timedelta(seconds=self.timeout_s))

    @property
    def size(self) -> int:
        return self.world.size

    def from_main(self, fn: Callable[[], T], share: bool = True) -> T:
        """`fn()` on rank 0, its value on every rank (with `share`; else None elsewhere); an error there (a busy or
        damaged run) is raised on every rank."""
        if self.world.size == 1:
            return fn()
        import torch.distributed as dist

        message: list[Any] = [None]
        if self.world.is_main:
            try:
                value = fn()
                message = [("ok", value if share else None)]
            except UserError as e:
                message = [("error", str(e))]
                dist.broadcast_object_list(message, src=0, device=self._device)
                raise
            except BaseException as e:
                message = [("error", f"rank 0 failed: {type(e).__name__}: {e}")]
                dist.broadcast_object_list(message, src=0, device=self._device)
                raise
        dist.broadcast_object_list(message, src=0, device=self._device)
        kind, payload = message[0]
        if self.world.is_main and kind == "ok":
            return value
        if kind == "error":
            if self.world.is_main:  # pragma: no cover - raised above
                raise DistributedError(payload)
            raise DistributedError(f"stopped with rank 0: {payload}")
        return payload

    def main_first(self, fn: Callable[[], T]) -> T:
        """`fn()` on rank 0 first, then on the others (it may write caches, the demo suite, that they then read)."""
        if self.world.is_main:
            return self.from_main(fn, share=False)
        self.from_main(fn, share=False)
        return fn()

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over the ranks (every rank calls it with as many values)."""
        if self.world.size == 1:
            return [float(v) for v in values]
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return [float(v) for v in t.cpu().tolist()]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if self.world.size == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world.size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.world.size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def describe_rank(world: World) -> dict[str, Any]:
    """What config.json records of one rank of a session."""
    return {"rank": world.rank, "local_rank": world.local_rank, "host": socket.gethostname(), "pid": os.getpid()}


def shares(items: Sequence[T], size: int, key: Callable[[T], Any]) -> list[list[T]]:
    """`items` dealt to `size` ranks: stratum by stratum (strata ordered by `key`, items in their order within
    one), round robin with one running counter. Every rank gets the same number of items give or take one, and
    of every stratum the same number give or take one, so no rank gets all the long ones. Each share keeps the
    items' order. Depends only on `items` and `size`: every rank computes the same shares.
    """
    strata: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        strata.setdefault(key(item), []).append(i)
    owner = [0] * len(items)
    counter = 0
    for k in sorted(strata, key=repr):
        for i in strata[k]:
            owner[i] = counter % size
            counter += 1
    out: list[list[T]] = [[] for _ in range(size)]
    for i, item in enumerate(items):
        out[owner[i]].append(item)
    return out
