"""Shard key names that Bytewax spreads evenly over workers, next to the partitions they serve.

Bytewax 0.21.1 sends a stateful step's key to worker
`siphash13(key) % worker_count` (Rust's `DefaultHasher`, zero keys, over the
key's UTF-8 bytes and a 0xff terminator: `str`'s `Hash`), and builds source
partitions on workers round-robin in sorted key order (partition `i` of the
sorted list on worker `i % worker_count`). Both measured here with two
processes (docs/dataflow.md, "Placement").

Plain names (`shard-0000`...) hash unevenly: with two workers 7 of 8 shards
landed on one of them, which then did nearly all the engine work. So each
shard name carries a small salt, chosen so that shard `s` lands on worker
`s % W` for every worker count `W` that divides 48 (1, 2, 3, 4, 6, 8, 12,
16, 24, 48). With N input partitions split by `crc32(customer_id) % N`
(N = W) and a shard count that is a multiple of N, every event then stays on
the worker that read it: nothing crosses a process boundary but the small
per-batch watermark messages to the other workers' shards.

The names depend only on the shard index: the same in every process and
after every restart, as recovery requires. Only the placement depends on the
hash; if a later Bytewax hashes differently, the flow stays correct and
merely loses the balance.
"""

from __future__ import annotations

from functools import cache

SPREAD = 48  # balanced for every worker count dividing 48
_MASK = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def siphash13(data: bytes) -> int:
    """SipHash-1-3 with a zero key, as Rust's `DefaultHasher::new()` (runs once per shard)."""
    v0, v1 = 0x736F6D6570736575, 0x646F72616E646F6D
    v2, v3 = 0x6C7967656E657261, 0x7465646279746573

    def rounds(v0: int, v1: int, v2: int, v3: int, n: int) -> tuple[int, int, int, int]:
        for _ in range(n):
            v0 = (v0 + v1) & _MASK
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _MASK
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _MASK
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _MASK
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)
        return v0, v1, v2, v3

    end = len(data) - len(data) % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v0, v1, v2, v3 = rounds(v0, v1, v2, v3 ^ m, 1)
        v0 ^= m
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[end:], "little")
    v0, v1, v2, v3 = rounds(v0, v1, v2, v3 ^ last, 1)
    v0, v1, v2, v3 = rounds(v0 ^ last, v1, v2 ^ 0xFF, v3, 3)
    return v0 ^ v1 ^ v2 ^ v3


def bytewax_worker(key: str, worker_count: int) -> int:
    """The worker Bytewax 0.21.1 routes a stateful key to."""
    return siphash13(key.encode() + b"\xff") % worker_count


@cache
def shard_key(index: int) -> str:
    """`shard-0003.50`: the first salt that places shard `index` on worker `index % W`."""
    salt = 0
    while bytewax_worker(key := f"shard-{index:04d}.{salt}", SPREAD) != index % SPREAD:
        salt += 1
    return key


def shard_keys(count: int) -> list[str]:
    return [shard_key(i) for i in range(count)]


def shard_index(key: str) -> int | None:
    """The index in a `shard_key` name (`shard-0003.50` -> 3); None for any other key."""
    index = key.removeprefix("shard-").partition(".")[0] if key.startswith("shard-") else ""
    return int(index) if index.isdigit() else None
