"""Near-duplicate leakage audit over 64-bit perceptual hashes: an exact Hamming-radius search, no O(n²).

Pigeonhole (multi-index hashing): split the 64 bits into ``d + 1`` disjoint bands. Two hashes within
distance ``d`` differ in at most ``d`` bands, so they agree exactly on at least one. Sorting on each band
gives buckets; pairs inside a bucket are candidates, verified with a popcount. Every true pair is a
candidate, so the result equals brute force: it is not an approximation.

Counting: a near pair is a pair of *items* (images). Identical hashes are collapsed to one value before
the search and the pairs they imply are counted combinatorially (m copies of a hash make m(m-1)/2 pairs
at distance 0; m copies near k copies of another make m*k), so 100,000 blank images cost nothing.
``audit`` takes optional exact-duplicate group ids (same sha256): pairs inside one group are left to the
exact-duplicate policy and not counted here. Without them, identical files count as near pairs too.

Cost, one core, 190k hashes (benchmarks/neardup_speed.py): d=4 0.2-0.5 s; each +2 of d costs ~4-5x
(d=6 1-5 s, d=8 5-10 s, d=10 ~30 s) as bands shrink. Memory stays ~tens of MB: pairs are streamed.
pHashes (``images.phash64``) have 32 one-bits (the threshold is the median of 64 values; ties aside), so
their distances are even: ``near_hamming`` 4 and 5 find the same pairs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

CHUNK = 1 << 17  # candidate pairs per step: bounds memory; temporaries stay in cache (measured fastest)
_POP8 = np.array([bin(v).count("1") for v in range(256)], np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x)
    return _POP8[x.view(np.uint8)].reshape(-1, 8).sum(1, dtype=np.uint8)


def _as_u64(hashes) -> np.ndarray:
    arr = np.asarray(hashes)
    if arr.dtype == np.int64:  # hashes stored signed (e.g. in a table without uint64): keep the bits
        return np.ascontiguousarray(arr).view(np.uint64).ravel()
    return np.asarray(hashes, dtype=np.uint64).ravel()


def _band_masks(values: np.ndarray, max_distance: int) -> list[np.uint64]:
    """``max_distance + 1`` disjoint bit masks covering all 64 bits, balanced by how informative bits are.

    Any partition keeps the search exact; balance keeps buckets small. On aligned faces pHash bits are
    far from fair (the DC bit is always 1, others are set on 94% or 6% of faces) and contiguous bands
    would group the lowest, most biased frequencies (measured on a face-pHash model: ~15% more candidates).
    """
    m = max_distance + 1
    sample = values[:: max(1, len(values) // 8192)]  # bit frequencies need no more
    p = ((sample[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).sum(0) / max(1, len(sample))
    bits = np.argsort(np.abs(p - 0.5), kind="stable")  # fairest bits first
    rank = np.arange(64)
    band = np.where((rank // m) % 2 == 0, rank % m, m - 1 - rank % m)  # deal snake-wise: 0..m-1, m-1..0, ...
    masks = [np.uint64(0)] * m
    for bit, b in zip(bits, band):
        masks[b] |= np.uint64(1) << np.uint64(bit)
    return masks


def _pairs_in_runs(keys: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Position pairs (p, q), p < q, inside runs of equal sorted ``keys``; ~CHUNK pairs per yield."""
    n = len(keys)
    if n < 2:
        return
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], n]
    after = np.repeat(ends, ends - starts) - np.arange(n) - 1  # partners following each position in its run
    pos = np.flatnonzero(after)
    after = after[pos]
    cum = np.cumsum(after)
    if not len(cum):
        return
    bounds = np.unique(np.r_[0, np.searchsorted(cum, np.arange(CHUNK, cum[-1], CHUNK), "right"), len(pos)])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        a, p0 = after[lo:hi], pos[lo:hi]
        block = np.cumsum(a) - a  # where each position's block of partners starts in this chunk
        p = np.repeat(p0, a)
        yield p, np.arange(len(p)) - np.repeat(block - p0 - 1, a)


def _distinct_pairs(values: np.ndarray, max_distance: int) -> Iterator[tuple[np.ndarray, ...]]:
    """Chunks of (a, b, distance), each pair once: a < b index the *distinct* ``values``, distance ≤ max."""
    if max_distance <= 0:
        return
    masks = _band_masks(values, max_distance)
    for k, mask in enumerate(masks):
        order = np.argsort(values & mask, kind="stable")
        h = values[order]
        for p, q in _pairs_in_runs(h & mask):
            x = h[p] ^ h[q]
            dist = _popcount(x)
            hit = np.flatnonzero(dist <= max_distance)
            x = x[hit]
            first = np.ones(len(hit), bool)  # a pair counts only in the first band it agrees on: no dedupe
            for earlier in masks[:k]:
                first &= (x & earlier) != 0
            hit = hit[first]
            a, b = order[p[hit]], order[q[hit]]
            yield np.minimum(a, b), np.maximum(a, b), dist[hit].astype(np.int64)


def near_pairs(hashes, max_distance: int) -> np.ndarray:
    """All item pairs (i, j), i < j, within ``max_distance`` bits, as brute force finds them; rows sorted.

    Materialises every pair (m identical hashes alone give m(m-1)/2 rows): for big data use ``audit``.
    """
    if not 0 <= max_distance < 64:
        raise ValueError(f"max_distance must be in 0..63, got {max_distance}")
    h = _as_u64(hashes)
    values, inv, counts = np.unique(h, return_inverse=True, return_counts=True)
    order = np.argsort(inv, kind="stable")  # items grouped by hash value
    start = np.cumsum(counts) - counts
    out = [(order[p], order[q]) for p, q in _pairs_in_runs(inv[order])]  # identical hashes
    for a, b, _ in _distinct_pairs(values, max_distance):
        ca, cb = counts[a], counts[b]
        r = np.repeat(np.arange(len(a)), ca * cb)  # every item of value a with every item of value b
        k = np.arange(len(r)) - np.repeat(np.cumsum(ca * cb) - ca * cb, ca * cb)
        out.append((order[start[a][r] + k // cb[r]], order[start[b][r] + k % cb[r]]))
    if not out:
        return np.empty((0, 2), np.int64)
    i, j = (np.concatenate(c) for c in zip(*out))
    pairs = np.stack([np.minimum(i, j), np.maximum(i, j)], 1).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


@dataclass
class NearReport:
    within_split: int  # near item pairs with both members in one split
    cross_split: int  # near item pairs across splits
    later_matched: np.ndarray  # bool (n,): has a near duplicate in an EARLIER split (dropped under "drop")
    examples: list[tuple[int, int, int]]  # closest cross-split pairs: (earlier-split item, later, distance)


def audit(hashes, split_ids, max_distance: int, groups=None, max_examples: int = 20) -> NearReport:
    """Near duplicates within and across splits (split ids: 0 train < 1 validation < 2 test).

    ``groups``: optional ids of exact-duplicate groups (same sha256); two items of one group with the same
    hash are not counted as a near pair nor matched, as the exact-duplicate policy handles them. Without it
    every pair of distinct items counts, identical files included.

    ``later_matched`` is deliberately simple and conservative: an item is marked when any item of an
    earlier split is near it, even one that is itself marked (train A ~ validation B ~ test C marks C too).
    Memory stays bounded: pairs are streamed in chunks and only counted; only the examples are kept.
    """
    if not 0 <= max_distance < 64:
        raise ValueError(f"max_distance must be in 0..63, got {max_distance}")
    item_hash = _as_u64(hashes)
    item_split = np.asarray(split_ids, np.int64).ravel()
    if len(item_split) != len(item_hash) or (len(item_split) and item_split.min() < 0):
        raise ValueError("split_ids must be non-negative and one per hash")
    n_items = len(item_hash)
    n_splits = int(item_split.max()) + 1 if n_items else 1
    values, item_value = np.unique(item_hash, return_inverse=True)  # distinct hashes; each item's one
    if groups is None:
        item_group = np.arange(n_items)
    else:
        item_group = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    if len(item_group) != n_items:
        raise ValueError("groups must have one id per hash")
    n_groups = int(item_group.max(initial=0)) + 1
    # A cell is a (hash value, exact-duplicate group) pair: items in one cell are not counted as near pairs.
    cells, item_cell = np.unique(item_value.astype(np.int64) * n_groups + item_group, return_inverse=True)
    cell_value = cells // n_groups
    value_split_count = np.bincount(item_value * n_splits + item_split,
                                    minlength=len(values) * n_splits).reshape(-1, n_splits)
    cell_split_count = np.bincount(item_cell * n_splits + item_split,
                                   minlength=len(cells) * n_splits).reshape(-1, n_splits)

    def pairs(count):
        return count * (count - 1) // 2

    def per_value(cell_totals):
        return np.bincount(cell_value, cell_totals, len(values)).astype(np.int64)

    # identical hashes, counted combinatorially: all pairs minus those inside one exact-duplicate cell
    within_by_value = pairs(value_split_count).sum(1) - per_value(pairs(cell_split_count).sum(1))
    cross_by_value = (pairs(value_split_count.sum(1)) - per_value(pairs(cell_split_count.sum(1)))
                      - within_by_value)
    within, cross = int(within_by_value.sum()), int(cross_by_value.sum())
    # marked if an earlier split holds the same hash outside the item's own cell...
    earlier_same_value = (np.cumsum(value_split_count, 1) - value_split_count)[item_value, item_split]
    earlier_same_cell = (np.cumsum(cell_split_count, 1) - cell_split_count)[item_cell, item_split]
    later_matched = earlier_same_value > earlier_same_cell
    # ...or holds a near distinct hash
    value_count = value_split_count.sum(1)
    value_first_split = np.argmax(value_split_count > 0, 1)
    earliest_near_split = np.full(len(values), n_splits)
    candidates = [np.empty(0, np.int64)] * 3  # the closest cross-split pairs of values: (a, b, distance)
    for a, b, dist in _distinct_pairs(values, max_distance):
        same_split = (value_split_count[a] * value_split_count[b]).sum(1)
        within += int(same_split.sum())
        cross += int((value_count[a] * value_count[b] - same_split).sum())
        np.minimum.at(earliest_near_split, a, value_first_split[b])
        np.minimum.at(earliest_near_split, b, value_first_split[a])
        keep = np.flatnonzero(value_count[a] * value_count[b] > same_split)
        candidates = [np.r_[column, more[keep]] for column, more in zip(candidates, (a, b, dist))]
        closest = np.argsort(candidates[2], kind="stable")[:max_examples]
        candidates = [column[closest] for column in candidates]
    later_matched |= earliest_near_split[item_value] < item_split
    examples = _examples(item_value, item_split, item_cell, cross_by_value, candidates, max_examples)
    return NearReport(within, cross, later_matched, examples)


def _examples(item_value, item_split, item_cell, cross_by_value, candidates,
              max_examples: int) -> list[tuple[int, int, int]]:
    """Turn value-level cross-split pairs into item pairs, closest first, earlier split first."""
    order = np.argsort(item_value, kind="stable")
    bounds = np.searchsorted(item_value[order], np.arange(len(cross_by_value) + 1))

    def items_of(value):
        return order[bounds[value]:bounds[value + 1]]

    found = []
    for value in np.flatnonzero(cross_by_value)[:max_examples]:  # same hash, other split and exact group
        same = items_of(value)
        first = same[0]
        other = same[(item_split[same] != item_split[first]) & (item_cell[same] != item_cell[first])]
        if len(other):
            found.append((first, other[0], 0))
        else:  # everything is in first's split or first's cell: a pair must mix those two
            found.append((same[item_cell[same] != item_cell[first]][0],
                          same[item_split[same] != item_split[first]][0], 0))
    for a, b, distance in zip(*candidates):
        items_a, items_b = items_of(a), items_of(b)
        other = items_b[item_split[items_b] != item_split[items_a[0]]]
        if len(other):
            found.append((items_a[0], other[0], distance))
        else:
            found.append((items_a[item_split[items_a] != item_split[items_b[0]]][0], items_b[0], distance))
    ordered = [(int(i), int(j), int(d)) if item_split[i] < item_split[j] else (int(j), int(i), int(d))
               for i, j, d in found]
    return sorted(ordered, key=lambda pair: pair[2])[:max_examples]
