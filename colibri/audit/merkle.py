"""RFC 6962 Merkle trees over audit leaves: the tree hash, inclusion and consistency proofs.

Hashes are 32-byte SHA-256 digests: a leaf is SHA-256(0x00 || entry), a node SHA-256(0x01 ||
left || right), the empty tree SHA-256("").  ``CompactRange`` is the right edge of a growing
tree (at most log2(n) hashes): appending is amortised O(1), its root O(log n), so checking every
checkpoint of a million-entry log is one pass.  Proof verification follows RFC 9162 §2.1.3.2 and
§2.1.4.2 (the same algorithms as RFC 6962, written iteratively).
"""

import hashlib
from collections.abc import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class CompactRange:
    """The perfect subtrees covering leaves [0, size), largest first: append leaves, read the root."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != bin(size).count("1"):
            raise ValueError("a compact range of that size holds one hash per 1 bit of the size")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf_hash: bytes) -> None:
        hashes, size = self.hashes, self.size
        value = leaf_hash
        while size & 1:  # each trailing 1 bit is a perfect subtree the new leaf completes
            value = node(hashes.pop(), value)
            size >>= 1
        hashes.append(value)
        self.size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        for item in leaf_hashes:
            self.append(item)

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        value = self.hashes[-1]
        for item in reversed(self.hashes[:-1]):
            value = node(item, value)
        return value

    def copy(self) -> "CompactRange":
        return CompactRange(self.size, self.hashes)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of leaf hashes."""
    tree = CompactRange()
    tree.extend(leaves)
    return tree.root()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) of RFC 6962 §2.1.1, leaf first."""
    if not 0 <= index < len(leaves):
        raise ValueError("leaf index outside the tree")
    proof: list[bytes] = []
    lo, hi = 0, len(leaves)
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            proof.append(root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(root(leaves[lo : lo + k]))
            lo += k
    proof.reverse()
    return proof


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 6962 §2.1.2 for ``old_size`` m, 0 < m <= n."""
    if not 0 < old_size <= len(leaves):
        raise ValueError("old size outside the tree")
    return _subproof(old_size, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root(leaves[:k])]


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], expected: bytes) -> bool:
    """Whether ``proof`` shows leaf ``index`` of a tree of ``size`` leaves is ``leaf_hash`` under ``expected``."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    value = leaf_hash
    for item in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            value = node(item, value)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            value = node(value, item)
        fn >>= 1
        sn >>= 1
    return sn == 0 and value == expected


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree of ``new_size`` leaves extends the one of ``old_size``."""
    if old_size == new_size:
        return not proof and old_root == new_root
    if not 0 < old_size < new_size or not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the proof's first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for item in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node(item, fr)
            sr = node(item, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, item)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
