"""NodeLabel bit operations against a bit-string model, and the tree's edge cases: a directory
with one label (the root lacks a child) and proofs of absence under it."""

from __future__ import annotations

import secrets

from hypothesis import given
from hypothesis import strategies as st

from e2ee_core.keytrans.directory import Directory
from e2ee_core.keytrans.history import key_history_verify
from e2ee_core.keytrans.lookup import lookup_verify
from e2ee_core.keytrans.node_label import EMPTY_LABEL, ROOT_LABEL, NodeLabel
from e2ee_core.keytrans.storage import MemoryDirectoryStorage

labels = st.builds(NodeLabel, st.binary(min_size=32, max_size=32), st.integers(0, 256))


def bits(label: NodeLabel) -> str:
    return "".join(f"{b:08b}" for b in label.label_val)[: label.label_len]


@given(a=labels, b=labels)
def test_prefix_and_common_prefix_match_a_bit_string_model(a: NodeLabel, b: NodeLabel) -> None:
    assert a.is_prefix_of(b) == bits(b).startswith(bits(a))
    lcp = a.longest_common_prefix(b)
    common = 0
    while common < min(a.label_len, b.label_len) and bits(a)[common] == bits(b)[common]:
        common += 1
    if common < 256:
        assert bits(lcp) == bits(a)[:common] and lcp.label_len == common
        assert int.from_bytes(lcp.label_val, "big") & ((1 << (256 - common)) - 1) == 0
    else:
        assert lcp == a


@given(a=labels, n=st.integers(0, 256))
def test_prefix_keeps_the_first_bits_and_zeroes_the_rest(a: NodeLabel, n: int) -> None:
    p = a.prefix(n)
    if n >= 256:
        assert p == a
    else:
        assert p.label_len == n and bits(p) == "".join(
            f"{x:08b}" for x in a.label_val)[:n]
        assert p.is_prefix_of(NodeLabel(a.label_val, 256))


def test_empty_label_has_no_common_prefix() -> None:
    some = NodeLabel(bytes(32), 256)
    assert some.longest_common_prefix(EMPTY_LABEL) == EMPTY_LABEL
    assert ROOT_LABEL.is_prefix_of(some)


def test_a_directory_with_a_single_label_proves_lookups_and_history() -> None:
    d = Directory(MemoryDirectoryStorage(), secrets.token_bytes(32))
    d.publish({b"only": b"v1"})
    head, proof = d.lookup(b"only")
    # the stale label's absence is proved at the root, whose other child is missing
    assert proof.freshness_proof.longest_prefix == ROOT_LABEL
    assert EMPTY_LABEL in {c.label for c in proof.freshness_proof.longest_prefix_children}
    assert lookup_verify(d.vrf_public_key, head.root_hash, head.epoch, b"only",
                         proof.to_bytes()).value == b"v1"
    d.publish({b"only": b"v2"})
    head, history = d.key_history(b"only")
    results = key_history_verify(d.vrf_public_key, head.root_hash, head.epoch, b"only", history)
    assert [r.value for r in results] == [b"v2", b"v1"]
