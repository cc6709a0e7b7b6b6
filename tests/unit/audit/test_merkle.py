"""RFC 6962 tree hash, inclusion and consistency proofs against the published test vectors.

Vectors: transparency-dev/merkle (the Certificate Transparency reference code), testonly/constants.go
(LeafInputs, RootHashes) and proof/verify_test.go (inclusionProofs, consistencyProofs; leaf indexes there
are 1-based), the same vectors as certificate-transparency's merkle_tree_test.
"""

import random

import pytest

from colibri.audit import merkle

LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                      "606162636465666768696a6b6c6d6e6f")]  # fmt: skip
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (1-based leaf, tree size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (2, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip
HASHES = [merkle.leaf(data) for data in LEAVES]


def test_tree_hash_of_every_size_matches_the_vectors() -> None:
    tree = merkle.CompactRange()
    assert tree.root().hex() == ROOTS[0]
    for size in range(1, 9):
        assert merkle.root(HASHES[:size]).hex() == ROOTS[size]
        tree.append(HASHES[size - 1])
        assert tree.root().hex() == ROOTS[size]
        assert len(tree.hashes) == bin(size).count("1")


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_the_vectors(leaf: int, size: int, proof: list[str]) -> None:
    got = merkle.inclusion_proof(HASHES[:size], leaf - 1)
    assert [h.hex() for h in got] == proof
    root = bytes.fromhex(ROOTS[size])
    assert merkle.verify_inclusion(HASHES[leaf - 1], leaf - 1, size, got, root)
    assert not merkle.verify_inclusion(HASHES[leaf], leaf - 1, size, got, root)  # another leaf
    assert not merkle.verify_inclusion(HASHES[leaf - 1], leaf - 1, size, got, bytes(32))  # another root
    if got:
        assert not merkle.verify_inclusion(HASHES[leaf - 1], leaf - 1, size, got[:-1], root)  # cut short
        bent = [bytes(32), *got[1:]]
        assert not merkle.verify_inclusion(HASHES[leaf - 1], leaf - 1, size, bent, root)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_proofs_match_the_vectors(old: int, new: int, proof: list[str]) -> None:
    got = merkle.consistency_proof(HASHES[:new], old)
    assert [h.hex() for h in got] == proof
    old_root, new_root = bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new])
    assert merkle.verify_consistency(old, new, old_root, new_root, got)
    if old != new:
        assert not merkle.verify_consistency(old, new, new_root, new_root, got)  # a rewritten past
        assert not merkle.verify_consistency(old, new, old_root, old_root, got)
        assert not merkle.verify_consistency(old, new, old_root, new_root, got[:-1])


def test_every_proof_of_random_trees_verifies_and_a_changed_leaf_does_not() -> None:
    rng = random.Random(12)
    leaves = [merkle.leaf(rng.randbytes(8)) for _ in range(70)]
    for size in (1, 2, 3, 7, 8, 9, 31, 64, 70):
        top = merkle.root(leaves[:size])
        for index in range(size):
            proof = merkle.inclusion_proof(leaves[:size], index)
            assert merkle.verify_inclusion(leaves[index], index, size, proof, top)
        for old in range(1, size + 1):
            proof = merkle.consistency_proof(leaves[:size], old)
            assert merkle.verify_consistency(old, size, merkle.root(leaves[:old]), top, proof)
        forged = [*leaves[: size - 1], merkle.leaf(b"forged")]
        assert merkle.root(forged) != top
