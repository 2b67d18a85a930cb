"""The oblivious revocable function over Ristretto255."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import rbcl

from e2ee_core.labyrinth import orf
from e2ee_core.labyrinth.errors import InvalidKeyLength, InvalidPublicKey

CLIENT_DOMAIN = b"attachment_client"
SERVER_DOMAIN = b"attachment_server"


def _full(client: orf.ClientState, server: orf.ServerState, data: bytes) -> bytes:
    return orf.server_map(server, SERVER_DOMAIN, orf.client_map(client, CLIENT_DOMAIN, data))


def test_mapping_is_hmac_of_the_point_times_both_scalars() -> None:
    client, server = orf.client_init(), orf.server_init()
    scoped = hmac.new(CLIENT_DOMAIN, b"attachment-1", hashlib.sha256).digest()
    point = rbcl.crypto_core_ristretto255_from_hash(hashlib.sha512(scoped).digest())
    product = rbcl.crypto_core_ristretto255_scalar_mul(client.value, server.value)
    expected = hmac.new(SERVER_DOMAIN, rbcl.crypto_scalarmult_ristretto255(product, point),
                        hashlib.sha256).digest()
    assert _full(client, server, b"attachment-1") == expected


def test_client_map_hides_the_input_behind_the_client_scalar() -> None:
    first, second = orf.client_init(), orf.client_init()
    assert orf.client_map(first, CLIENT_DOMAIN, b"x") != orf.client_map(second, CLIENT_DOMAIN,
                                                                        b"x")


def test_evolution_keeps_the_mapping_across_devices() -> None:
    client, server = orf.client_init(), orf.server_init()
    before = [_full(client, server, bytes([i])) for i in range(5)]
    for _ in range(3):  # device -> virtual device -> restored device -> ...
        client, token = orf.client_evolve(client)
        server = orf.server_evolve(server, token)
        assert [_full(client, server, bytes([i])) for i in range(5)] == before


def test_a_revoked_clients_scalar_is_useless_with_another_devices_server_state() -> None:
    client, server = orf.client_init(), orf.server_init()
    new_client, token = orf.client_evolve(client)
    new_server = orf.server_evolve(server, token)
    # The server deleted `server` on revocation: the old client state with the surviving
    # server state gives a different, useless mapping.
    assert _full(client, new_server, b"a") != _full(new_client, new_server, b"a")


def test_domains_separate_the_mapping() -> None:
    client, server = orf.client_init(), orf.server_init()
    blinded = orf.client_map(client, CLIENT_DOMAIN, b"a")
    assert orf.server_map(server, b"other", blinded) != orf.server_map(server, SERVER_DOMAIN,
                                                                       blinded)
    assert orf.client_map(client, b"other", b"a") != blinded


@pytest.mark.parametrize("point", [bytes(32), b"\xff" * 32, bytes(31), bytes(33)])
def test_server_refuses_invalid_points(point: bytes) -> None:
    with pytest.raises(InvalidPublicKey):
        orf.server_map(orf.server_init(), SERVER_DOMAIN, point)


@pytest.mark.parametrize("value", [bytes(32), b"\xff" * 32, bytes(31)])
def test_scalars_must_be_canonical_and_non_zero(value: bytes) -> None:
    with pytest.raises(InvalidKeyLength):
        orf.Scalar(value)


def test_domain_and_input_limits() -> None:
    client = orf.client_init()
    with pytest.raises(InvalidKeyLength):
        orf.client_map(client, b"", b"a")
    with pytest.raises(InvalidKeyLength):
        orf.client_map(client, CLIENT_DOMAIN, bytes(4097))


def test_scalar_repr_hides_the_secret() -> None:
    scalar = orf.client_init()
    assert scalar.value.hex() not in repr(scalar)


def test_rbcls_temporary_library_file_is_removed_after_import() -> None:
    import os
    import sys

    path = sys.modules["rbcl._sodium"].lib_path
    assert isinstance(path, str)
    assert not os.path.exists(path)
