"""Key configurations (RFC 9458 §3): an ``application/ohttp-keys`` list or one bare config,
as a client reads them from a gateway or a configuration file."""

from __future__ import annotations

from collections.abc import Iterator

from fuzz.targets._ohttp_keys import KEYS
from fuzz.vectors import vectors
from ohttp_relay.errors import OHTTPError
from ohttp_relay.ohttp import KeyConfig, decode_key_configs, encode_key_configs, parse_key_material

ACCEPTED: tuple[type[Exception], ...] = (OHTTPError,)
MAX_LEN = 2048


def test_one_input(data: bytes) -> None:
    try:
        configs = parse_key_material(data)
    except ACCEPTED:
        configs = []
    for config in configs:
        assert KeyConfig.from_bytes(config.to_bytes()) == config, "config does not round-trip"
        try:
            config.choose_suite()
        except ACCEPTED:
            pass
    try:
        decode_key_configs(data, skip_unsupported=False)
    except ACCEPTED:
        pass


def seeds() -> Iterator[bytes]:
    for vector in vectors("rfc9458"):
        yield bytes.fromhex(vector["key_config"])
    configs = [key.config for key in KEYS.values()]
    yield encode_key_configs(configs)
    for config in configs:
        yield config.to_bytes()
