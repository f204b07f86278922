"""Static memory plan: every activation tensor gets an offset in one arena at generation time.

Lifetimes come from the op order; tensors that alias (RESHAPE-like ops, in-place unary
ops) share one buffer; buffers are placed greedily, largest first, at the lowest offset
that does not collide with a buffer alive at the same time."""

from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 4  # int32/float tensors and word loads; TFLM aligns to 16, so we never lose to it


@dataclass
class Buffer:
    tensors: list[int]
    size: int
    first: int  # op index that writes it (-1: graph input, alive from the start)
    last: int  # last op index that reads it
    offset: int = -1


@dataclass
class MemoryPlan:
    buffers: list[Buffer]
    offset_of: dict[int, int] = field(default_factory=dict)  # tensor index -> arena offset
    arena_bytes: int = 0


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan_memory(
    num_ops: int,
    op_io: list[tuple[list[int], list[int]]],
    sizes: dict[int, int],
    graph_inputs: list[int],
    graph_outputs: list[int],
    aliases: list[tuple[int, int]],
) -> MemoryPlan:
    """``op_io``: per op, (arena tensors read, arena tensors written); ``sizes`` in bytes;
    ``aliases``: (input tensor, output tensor) pairs that must share storage."""
    parent = {t: t for t in sizes}

    def find(t: int) -> int:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for a, b in aliases:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra
    groups: dict[int, Buffer] = {}
    for t, size in sizes.items():
        r = find(t)
        buf = groups.setdefault(r, Buffer([], 0, num_ops, -1))
        buf.tensors.append(t)
        buf.size = max(buf.size, size)
    for i, (reads, writes) in enumerate(op_io):
        for t in writes:
            b = groups[find(t)]
            b.first = min(b.first, i)
            b.last = max(b.last, i)
        for t in reads:
            b = groups[find(t)]
            b.last = max(b.last, i)
    for t in graph_inputs:
        groups[find(t)].first = -1
    for t in graph_outputs:
        groups[find(t)].last = num_ops
    bufs = sorted(groups.values(), key=lambda b: (-b.size, b.first, min(b.tensors)))
    placed: list[Buffer] = []
    for b in bufs:
        live = sorted(
            (p for p in placed if not (p.last < b.first or b.last < p.first)), key=lambda p: p.offset
        )
        off = 0
        for p in live:
            if off + b.size <= p.offset:
                break
            off = max(off, _align(p.offset + p.size))
        b.offset = off
        placed.append(b)
    plan = MemoryPlan(bufs)
    for b in bufs:
        for t in b.tensors:
            plan.offset_of[t] = b.offset
    plan.arena_bytes = _align(max((b.offset + b.size for b in bufs), default=0)) or ALIGN
    return plan
