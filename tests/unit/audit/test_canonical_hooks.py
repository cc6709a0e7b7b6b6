"""The fast path of audit.canonical writes exactly the bytes of RFC 8785 (the rfc8785 package)."""

import random

import pytest
import rfc8785

from colibri.audit.canonical import NotCanonical, canonical

AWKWARD = ["", "a", "é", "\u20ac", "\U0001f600", "\x00", "\x1f", "\x7f", "\b\f\n\r\t", '"\\/', "\u2028\u2029",
           "\ufeff", "\ue000", "<script>", "'"]  # fmt: skip


def value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 1, 2**53 - 1, -(2**53 - 1), rng.randrange(-(10**9), 10**9)])
    if kind in (2, 3):
        return "".join(rng.choice(AWKWARD) for _ in range(rng.randrange(4)))
    if kind in (4, 5):
        return {rng.choice(["a", "B", "seq", "detail", "_x", "z9", "é", "\ue000", "\U0001f600"]): value(rng, depth + 1)
                for _ in range(rng.randrange(5))}  # fmt: skip
    return [value(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_the_fast_path_agrees_with_rfc8785() -> None:
    rng = random.Random(8785)
    for _ in range(3000):
        entry = {"detail": value(rng), "seq": rng.randrange(10**6), "v": 1, "host": "osa"}
        assert canonical(entry) == rfc8785.dumps(entry), entry


def test_what_no_entry_may_hold_is_refused() -> None:
    for bad in ({"x": 1.5}, {"x": 2**53}, {"x": b"bytes"}, {"x": {1: 2}}):
        with pytest.raises(NotCanonical):
            canonical(bad)  # type: ignore[arg-type]
    with pytest.raises(rfc8785.CanonicalizationError):
        canonical({"x": "\ud800"})  # a lone surrogate: no UTF-8, no RFC 8785
