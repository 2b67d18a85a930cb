"""The performance shortcuts keep every check: lookups of a version that is its own marker
(1, 2, 4, ...) verify the shared VRF proof once, and a lookup whose existence or marker VRF proof
alone is corrupted still fails."""

from __future__ import annotations

import dataclasses

import pytest

from e2ee_core.keytrans import ecvrf
from e2ee_core.keytrans.directory import Directory
from e2ee_core.keytrans.errors import InvalidVrfProof, KeyTransparencyError
from e2ee_core.keytrans.lookup import lookup_verify
from e2ee_core.keytrans.storage import MemoryDirectoryStorage

LABEL = b"alice/devices"


def directory_at(version: int) -> Directory:
    d = Directory(MemoryDirectoryStorage(), vrf_secret_key=bytes(range(32)))
    d.publish({b"other": b"x"})
    for v in range(1, version + 1):
        d.publish({LABEL: f"value {v}".encode()})
    return d


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_lookups_verify_at_every_version(version: int) -> None:
    d = directory_at(version)
    head, proof = d.lookup(LABEL)
    result = lookup_verify(d.vrf_public_key, head.root_hash, head.epoch, LABEL, proof.to_bytes())
    assert (result.version, result.value) == (version, f"value {version}".encode())
    if version in (1, 2, 4):  # its own marker: the same VRF proof twice
        assert proof.existence_vrf_proof == proof.marker_vrf_proof


def _flip(pi: bytes) -> bytes:
    return pi[:40] + bytes([pi[40] ^ 1]) + pi[41:]  # a bit of c


@pytest.mark.parametrize("version", [1, 4])
@pytest.mark.parametrize("field", ["existence_vrf_proof", "marker_vrf_proof"])
def test_one_corrupted_copy_of_a_shared_vrf_proof_fails(version: int, field: str) -> None:
    d = directory_at(version)
    head, proof = d.lookup(LABEL)
    changes: dict[str, object] = {field: _flip(getattr(proof, field))}
    bad = dataclasses.replace(proof, **changes)  # type: ignore[arg-type]
    with pytest.raises(InvalidVrfProof):
        lookup_verify(d.vrf_public_key, head.root_hash, head.epoch, LABEL, bad)


def test_a_valid_vrf_proof_of_another_input_is_refused_as_marker() -> None:
    d = directory_at(4)
    head, proof = d.lookup(LABEL)
    other = d.lookup(b"other")[1].existence_vrf_proof
    assert ecvrf.proof_to_hash(other)  # a well-formed proof, for another label
    bad = dataclasses.replace(proof, marker_vrf_proof=other)
    with pytest.raises(KeyTransparencyError):
        lookup_verify(d.vrf_public_key, head.root_hash, head.epoch, LABEL, bad)
