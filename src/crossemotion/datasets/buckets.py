"""Length-bucketed batching: the cost of a padded batch follows its real token count.

With dynamic padding a batch is as wide as its longest item, so a random batch
of MELD utterances with dialogue context pays for its one long outlier on
every row. Training batches are drawn from pools of similar-length items
instead; the order of the pools, of the items in them and of the batches is
random but comes from one seed (the loop passes ``seed * 1000 + epoch``), so a
run and its resumed copy see the same batches. Evaluation runs in length order
and the caller puts the outputs back in dataset order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

# batches per pool: large enough that each pool's sort yields near-uniform
# widths, small enough that a batch still mixes items from across the split
POOL_BATCHES = 50


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of similar lengths in a seeded random order.

    Each epoch: a seeded permutation of all items is cut into pools of
    ``pool_batches * batch_size``; each pool is sorted by length (longest first)
    and cut into batches; the batches of all pools are then shuffled. Pools are
    whole multiples of the batch size, so only the last batch may be short and
    there are ``ceil(n / batch_size)`` batches, as with plain shuffling.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int,
        pool_batches: int = POOL_BATCHES,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.pool = max(1, int(pool_batches)) * self.batch_size

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(self.lengths))
        out: list[list[int]] = []
        for start in range(0, len(order), self.pool):
            pool = order[start : start + self.pool]
            pool = pool[np.argsort(-self.lengths[pool], kind="stable")]
            out += [
                pool[i : i + self.batch_size].tolist() for i in range(0, len(pool), self.batch_size)
            ]
        return [out[i] for i in rng.permutation(len(out))]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def length_order(lengths: Sequence[int]) -> np.ndarray:
    """Item indices by increasing length (stable: equal lengths keep dataset order)."""
    return np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")


def ordered_batches(order: np.ndarray, batch_size: int) -> list[list[int]]:
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), max(1, batch_size))]
