"""The near-duplicate search must equal brute force exactly; the audit's counts and marks must be right."""

from __future__ import annotations

import numpy as np
import pytest

from deepfake_detector.data import neardup
from deepfake_detector.data.neardup import audit, near_pairs

ONE = np.uint64(1)


def _distances(h: np.ndarray) -> np.ndarray:
    return np.bitwise_count(h[:, None] ^ h[None, :]).astype(np.int64)


def _brute_pairs(h: np.ndarray, d: int) -> np.ndarray:
    i, j = np.nonzero(np.triu(_distances(h) <= d, 1))
    return np.stack([i, j], 1).astype(np.int64)


def _flip(h: np.ndarray, n_bits: int, rng) -> np.ndarray:
    h = h.copy()
    for _ in range(n_bits):
        h ^= ONE << rng.integers(0, 64, len(h)).astype(np.uint64)
    return h


def _uniform(n, rng):
    return rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)


def _clumpy(n, rng):
    """Few centres, each copy a few random bit flips away: dense buckets, many true near pairs."""
    centres = _uniform(60, rng)[rng.integers(0, 60, n)]
    return _flip(centres, 3, rng)


def _dups(n, rng):
    """Heavy identical-hash clumps plus near copies of them."""
    base = np.repeat(_uniform(20, rng), n // 40)
    return np.r_[base, _flip(base, 2, rng)]


def _one_bucket(n, rng):
    """Distinct hashes differing only in their low 12 bits: one giant bucket in most bands."""
    return np.unique(_uniform(1, rng)[0] ^ rng.integers(0, 4096, n, dtype=np.uint64))


@pytest.fixture(scope="module")
def sets():
    rng = np.random.default_rng(7)
    return {f.__name__: f(1500, rng) for f in (_uniform, _clumpy, _dups, _one_bucket)}


@pytest.mark.parametrize("d", [0, 1, 2, 4, 6, 8, 13])
@pytest.mark.parametrize("kind", ["_uniform", "_clumpy", "_dups", "_one_bucket"])
def test_near_pairs_equals_brute_force(sets, kind, d):
    h = sets[kind]
    np.testing.assert_array_equal(near_pairs(h, d), _brute_pairs(h, d))


def test_tiny_chunks_change_nothing(sets, monkeypatch):
    """Chunk boundaries fall inside buckets and inside one position's partners: still exact."""
    monkeypatch.setattr(neardup, "CHUNK", 7)
    for kind in ("_clumpy", "_one_bucket"):
        h = sets[kind][:400]
        np.testing.assert_array_equal(near_pairs(h, 4), _brute_pairs(h, 4))


@pytest.mark.parametrize("d", list(range(0, 33)) + [63])
def test_bands_partition_all_64_bits(d):
    rng = np.random.default_rng(d)
    biased = _uniform(3000, rng) | np.uint64(0xF000_0000_0000_0001)  # constant bits, like pHash's DC bit
    for values in (biased, _uniform(3000, rng), np.empty(0, np.uint64)):
        masks = neardup._band_masks(values, d)
        assert len(masks) == d + 1 and all(m != 0 for m in masks)
        union = np.uint64(0)
        for m in masks:
            assert union & m == 0  # disjoint
            union |= m
        assert union == np.uint64(2**64 - 1)
        widths = [bin(int(m)).count("1") for m in masks]
        assert max(widths) - min(widths) <= 1  # 64 / (d + 1) bits each, rounded


def test_hand_built_splits():
    rng = np.random.default_rng(1)
    a, b, c, far = (int(x) for x in _uniform(4, rng))
    def near(x, *bits):  # x with the given bits flipped
        return x ^ sum(1 << k for k in bits)

    hashes = [
        a,  # 0 train
        near(a, 3, 40, 63),  # 1 test: 3 bits from a train image -> cross pair, marked
        b,  # 2 train
        near(b, 5),  # 3 train: copy inside train -> within only, not marked
        c,  # 4 validation
        near(c, 1, 2),  # 5 train: earlier than its partner -> the validation one (4) is marked
        far,  # 6 test
        near(far, 0, 1, 2, 3, 4),  # 7 train: 5 bits away -> not near at d=4
    ]
    splits = [0, 2, 0, 0, 1, 0, 2, 0]
    r = audit(np.array(hashes, np.uint64), splits, 4)
    assert (r.within_split, r.cross_split) == (1, 2)
    assert r.later_matched.tolist() == [False, True, False, False, True, False, False, False]
    assert r.examples == [(5, 4, 2), (0, 1, 3)]  # closest first, earlier split first
    r5 = audit(np.array(hashes, np.uint64), splits, 5)
    assert (r5.within_split, r5.cross_split) == (1, 3) and r5.later_matched[6]


def test_distance_zero_is_identical_hashes_only():
    h = np.array([5, 5, 4, 5, 7], np.uint64)  # 4 and 7 are one bit from 5
    np.testing.assert_array_equal(near_pairs(h, 0), [[0, 1], [0, 3], [1, 3]])
    r = audit(h, [0, 1, 0, 2, 0], 0)
    assert (r.within_split, r.cross_split) == (0, 3)
    assert r.later_matched.tolist() == [False, True, False, True, False]
    assert len(r.examples) == 1 and r.examples[0][2] == 0


def _brute_audit(h, s, d, groups):
    D = _distances(h)
    near = np.triu(D <= d, 1) & ~((groups[:, None] == groups[None, :]) & (D == 0))
    i, j = np.nonzero(near)
    same = s[i] == s[j]
    later = np.zeros(len(h), bool)
    later[np.r_[j[s[i] < s[j]], i[s[j] < s[i]]]] = True
    return int(same.sum()), int((~same).sum()), later, D


@pytest.mark.parametrize("d", [0, 2, 4, 7])
@pytest.mark.parametrize("with_groups", [False, True])
def test_audit_equals_brute_force(sets, d, with_groups):
    rng = np.random.default_rng(d)
    h = np.r_[sets["_clumpy"][:700], sets["_dups"][::3]]
    s = rng.choice(3, len(h), p=[0.7, 0.2, 0.1])
    # exact-duplicate groups: items with one hash split into two groups (as if two files each had copies)
    groups = np.unique(h, return_inverse=True)[1] * 2 + (rng.random(len(h)) < 0.3)
    if not with_groups:
        groups = np.arange(len(h))
    r = audit(h, s, d, groups=groups if with_groups else None, max_examples=15)
    within, cross, later, D = _brute_audit(h, s, d, groups)
    assert (r.within_split, r.cross_split) == (within, cross)
    np.testing.assert_array_equal(r.later_matched, later)
    assert len(r.examples) == min(15, cross)
    for i, j, dist in r.examples:
        assert s[i] < s[j] and D[i, j] == dist <= d
        assert not (groups[i] == groups[j] and dist == 0)
    dists = [e[2] for e in r.examples]
    assert dists == sorted(dists)
    # they are the closest cross-split pairs there are
    exact = (groups[:, None] == groups[None, :]) & (D == 0)
    cross_d = np.sort(D[np.triu(D <= d, 1) & (s[:, None] != s[None, :]) & ~exact])
    assert dists == cross_d[: len(dists)].tolist()


def test_identical_clump_is_counted_without_listing_pairs():
    """20 billion pairs, counted combinatorially (benchmarks/neardup_speed.py times this case)."""
    rng = np.random.default_rng(3)
    blank = np.uint64(0x8000_0000_FFFF_0000)
    h = np.r_[np.full(200_000, blank), _flip(np.full(1000, blank), 1, rng), _uniform(20_000, rng)]
    s = np.r_[np.zeros(150_000), np.ones(50_000), np.full(1000, 2), np.zeros(20_000)].astype(int)
    r = audit(h, s, 4)
    # 200k identical + 1,000 one-bit neighbours: all 201,000 items are pairwise within 2 bits
    m = 201_000
    in_split = 150_000 * 149_999 // 2 + 50_000 * 49_999 // 2 + 1000 * 999 // 2
    assert r.within_split + r.cross_split == m * (m - 1) // 2
    assert r.within_split == in_split
    assert r.later_matched[150_000:201_000].all() and not r.later_matched[:150_000].any()
    assert len(r.examples) == 20


def test_exact_duplicate_group_left_to_the_exact_check():
    h = np.array([9, 9, 9, 9 ^ 2], np.uint64)
    s = [0, 2, 1, 2]
    r = audit(h, s, 1, groups=["x", "x", "y", "z"])  # items 0 and 1 are the same file
    # pairs: (0,2) (1,2) cross at 0, (0,3) (2,3) cross at 1, (1,3) within at 1; (0,1) excluded
    assert (r.within_split, r.cross_split) == (1, 4)
    assert r.later_matched.tolist() == [False, True, True, True]  # 1 matches 2 (validation), not only 0


def test_input_forms_and_errors():
    big = [2**64 - 1, 2**64 - 2, 3]
    np.testing.assert_array_equal(near_pairs(big, 1), [[0, 1]])
    signed = np.array(big, np.uint64).view(np.int64)  # hashes stored signed keep their bits
    np.testing.assert_array_equal(near_pairs(signed, 1), [[0, 1]])
    assert near_pairs([], 4).shape == (0, 2)
    r = audit(np.empty(0, np.uint64), np.empty(0, int), 4)
    assert (r.within_split, r.cross_split, r.examples, r.later_matched.shape) == (0, 0, [], (0,))
    with pytest.raises(ValueError):
        near_pairs(big, 64)
    with pytest.raises(ValueError):
        audit(big, [0, 1], 4)
    with pytest.raises(ValueError):
        audit(big, [0, 1, 2], 4, groups=["a", "b"])
