"""AKD's WhatsApp v1 hashing (akd_core configuration/whatsapp_v1.rs): BLAKE3, no domain
separation. Byte layouts exactly as facebook/akd; see docs/key-transparency.md."""

from __future__ import annotations

from blake3 import blake3

from e2ee_core.keytrans import consts


def h(data: bytes) -> bytes:
    """BLAKE3 with the default 32-byte output (WhatsAppV1Configuration::hash)."""
    return blake3(data).digest()


def i2osp_array(data: bytes) -> bytes:
    """u64be(len(data)) || data (akd_core utils::i2osp_array)."""
    return len(data).to_bytes(8, "big") + data


def node_label_value(label_bytes: bytes) -> bytes:
    """H(u32be(label_len) || label_val) (compute_node_label_value)."""
    return h(label_bytes)


def commitment(value: bytes, nonce: bytes) -> bytes:
    """H(i2osp_array(value) || i2osp_array(nonce)): the commitment a fresh leaf holds."""
    return h(i2osp_array(value) + i2osp_array(nonce))


def commitment_nonce(commitment_key: bytes, label_bytes: bytes, version: int,
                     value: bytes) -> bytes:
    """The server's nonce: H(commitment_key || label_bytes || u64be(version) ||
    i2osp_array(value)) (get_commitment_nonce)."""
    return h(commitment_key + label_bytes + version.to_bytes(8, "big") + i2osp_array(value))


def leaf_hash_with_commitment(azks_value: bytes, epoch: int) -> bytes:
    """H(azks_value || u64be(epoch)): a leaf's value stamped with its epoch."""
    return h(azks_value + epoch.to_bytes(8, "big"))


def leaf_hash_with_value(value: bytes, epoch: int, nonce: bytes) -> bytes:
    """The leaf hash of a fresh version holding ``value`` (hash_leaf_with_value)."""
    return leaf_hash_with_commitment(commitment(value, nonce), epoch)


def stale_azks_value() -> bytes:
    """H(00): what a superseded version's leaf holds (stale_azks_value)."""
    return h(consts.EMPTY_VALUE)


def empty_root_value() -> bytes:
    """H(00): the root value of an empty tree."""
    return h(consts.EMPTY_VALUE)


def parent_hash(left_val: bytes, left_label_value: bytes, right_val: bytes,
                right_label_value: bytes) -> bytes:
    """H(H(Lval || lv(L)) || H(Rval || lv(R))) (compute_parent_hash_from_children)."""
    return h(h(left_val + left_label_value) + h(right_val + right_label_value))


def root_hash(root_value: bytes, root_label_value: bytes) -> bytes:
    """H(root_value || lv(ROOT_LABEL)): the published epoch hash (compute_root_hash_from_val)."""
    return h(root_value + root_label_value)


def vrf_alpha(akd_label: bytes, fresh: bool, version: int) -> bytes:
    """The VRF input: H(i2osp_array(akd_label) || freshness || u64be(version))
    (get_hash_from_label_input)."""
    freshness = consts.FRESH if fresh else consts.STALE
    return h(i2osp_array(akd_label) + freshness + version.to_bytes(8, "big"))
