"""Which instances a GRPO round rolls out: :class:`InstanceRoundSampler` (TRL's ``RepeatSampler`` for instances)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class InstanceRoundSampler(Sampler[int]):
    """Per round, ``instances_per_round`` distinct instances, the block repeated ``repeat_count`` times.

    The order is a permutation drawn from (seed, epoch) alone; incomplete last rounds are dropped.
    """

    def __init__(
        self, num_instances: int, instances_per_round: int, repeat_count: int = 1, shuffle: bool = True, seed: int = 0
    ) -> None:
        if instances_per_round < 1 or repeat_count < 1:
            raise ValueError("instances_per_round and repeat_count must be >= 1")
        if num_instances < instances_per_round:
            raise ValueError(
                f"{num_instances} training instances cannot fill one round of {instances_per_round} instances; "
                "lower training.instances_per_step or add training data"
            )
        self.num_instances = num_instances
        self.instances_per_round = instances_per_round
        self.repeat_count = repeat_count
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def rounds(self) -> int:
        return self.num_instances // self.instances_per_round

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 10_007 + self.epoch)
            order = torch.randperm(self.num_instances, generator=generator).tolist()
        else:
            order = list(range(self.num_instances))
        for r in range(self.rounds):
            block = order[r * self.instances_per_round : (r + 1) * self.instances_per_round]
            for _ in range(self.repeat_count):
                yield from block

    def __len__(self) -> int:
        return self.rounds * self.instances_per_round * self.repeat_count
