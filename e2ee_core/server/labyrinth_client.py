"""A typed HTTP client for the Labyrinth mailbox API (``/v1/labyrinth``, issue #15).

It rides on a :class:`~e2ee_core.server.client.ServerClient` (same connection pool, credential,
timeouts and error mapping): every failure is a
:class:`~e2ee_core.server.errors.ServerError` subclass, the Labyrinth ones of
:mod:`e2ee_core.server.labyrinth_errors` included (``error_from_problem`` knows them). The
client side of the protocol (sealing, epochs, the ORF's blinding) is :mod:`e2ee_core.labyrinth`;
this class only moves its bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import requests

from e2ee_core.server import consts
from e2ee_core.server.client import ServerClient, _decoded
from e2ee_core.server.errors import UnexpectedResponse
from e2ee_core.server.labyrinth_wire import (
    AttachmentReference,
    EpochMemberUpload,
    EpochRecord,
    EvaluateRequest,
    EvolveRequest,
    LoadQuery,
    MemberInfo,
    MemberKeys,
    OpenEpochRequest,
    RecordKey,
    RecordPage,
    StoredRecord,
    VirtualDevice,
    decode_epoch_id,
    decode_member,
    decode_ref_index,
    decode_vdevice_id,
    device_member,
)
from e2ee_core.server.wire import decode_bytes, decode_int, encode_bytes

PREFIX = "/v1/labyrinth"


class LabyrinthClient:
    """One device's access to its account's mailbox."""

    def __init__(self, server: ServerClient) -> None:
        self.server = server

    @property
    def member(self) -> str:
        """This device's member name, ``"d<device id>"``."""
        return device_member(self.server.address.device_id)

    def _call(self, method: str, path: str, *, json_body: Any = None,
              params: dict[str, str] | None = None) -> requests.Response:
        return self.server._request(method, PREFIX + path, json_body=json_body, params=params)

    def _json(self, resp: requests.Response) -> Any:
        return self.server._json(resp)

    def _count(self, resp: requests.Response, name: str) -> int:
        body = self._json(resp)
        return _decoded(lambda: decode_int(body[name], name))

    # -- members -------------------------------------------------------------------------------
    def put_member_keys(self, keys: MemberKeys, member: str | None = None) -> None:
        """Publish this device's (or a virtual device's) Labyrinth public keys."""
        name = self.member if member is None else decode_member(member)
        self._call("PUT", f"/members/{name}", json_body=keys.to_json())

    def members(self) -> list[MemberInfo]:
        """The account's members with keys and their MAC in the current epoch."""
        body = self._json(self._call("GET", "/members"))
        return _decoded(lambda: [MemberInfo.from_json(m) for m in body["members"]])

    # -- epochs --------------------------------------------------------------------------------
    def open_epoch(self, sequence_id: int, members: Sequence[EpochMemberUpload], *,
                   previous_epoch_id: int | None = None,
                   encrypted_previous_sequence_id: bytes | None = None,
                   encrypted_previous_root_key: bytes | None = None,
                   head: bytes | None = None) -> int:
        """Store a new epoch (the first one with ``previous_epoch_id=None``); its server id.
        :class:`EpochConflict` when another device opened one first."""
        req = OpenEpochRequest(sequence_id, previous_epoch_id, encrypted_previous_sequence_id,
                               encrypted_previous_root_key, tuple(members), head)
        body = self._json(self._call("POST", "/epochs", json_body=req.to_json()))
        return _decoded(lambda: decode_epoch_id(body["epoch_id"]))

    def epochs(self, after_sequence: int | None = None, *, member: str | None = None,
               limit: int | None = None) -> list[EpochRecord]:
        """Epochs in sequence order with ``member``'s (default: this device's) entropy
        message and membership MAC in each."""
        params: dict[str, str] = {}
        if after_sequence is not None:
            params["after_sequence"] = str(decode_int(after_sequence, "after_sequence"))
        if member is not None:
            params["member"] = decode_member(member)
        if limit is not None:
            params["limit"] = str(decode_int(limit, "limit", minimum=1))
        body = self._json(self._call("GET", "/epochs", params=params))
        return _decoded(lambda: [EpochRecord.from_json(e) for e in body["epochs"]])

    def all_epochs(self, *, member: str | None = None) -> list[EpochRecord]:
        """Every epoch, paging through the listing."""
        out: list[EpochRecord] = []
        while True:
            page = self.epochs(out[-1].sequence_id if out else None, member=member)
            if not page:
                return out
            for epoch in page:  # in order and after the last one: the loop always ends
                if out and epoch.sequence_id <= out[-1].sequence_id:
                    raise UnexpectedResponse("epochs out of order")
                out.append(epoch)

    def epoch(self, epoch_id: int | None = None, *, member: str | None = None) -> EpochRecord:
        """One epoch (the current one by default)."""
        path = "/epochs/current" if epoch_id is None else f"/epochs/{decode_epoch_id(epoch_id)}"
        params = None if member is None else {"member": decode_member(member)}
        body = self._json(self._call("GET", path, params=params))
        return _decoded(lambda: EpochRecord.from_json(body))

    def put_membership_mac(self, membership_mac: bytes, member: str | None = None) -> None:
        """Add this device's (or a virtual device's) MAC to the current epoch."""
        name = self.member if member is None else decode_member(member)
        self._call("PUT", f"/epochs/current/members/{name}",
                   json_body={"membership_mac": encode_bytes(membership_mac)})

    # -- ORF -----------------------------------------------------------------------------------
    def orf_init(self) -> None:
        """Create the account's first ORF server share, for this device."""
        self._call("POST", "/orf/init")

    def orf_evolve(self, source: str, target: str, token: bytes) -> None:
        """Have the server store ``share(source) / token`` as ``target``'s share."""
        self._call("POST", "/orf/evolve",
                   json_body=EvolveRequest(decode_member(source), decode_member(target),
                                           token).to_json())

    def orf_evaluate(self, blinded: Sequence[bytes], domain: str = "default") -> list[bytes]:
        """The server's half of the ORF on each blinded point, with this device's share."""
        req = EvaluateRequest(domain, tuple(blinded))
        body = self._json(self._call("POST", "/orf/evaluate", json_body=req.to_json()))
        outputs = _decoded(lambda: [decode_bytes(o, "output", max_len=32)
                                    for o in body["outputs"]])
        if len(outputs) != len(blinded) or any(len(o) != 32 for o in outputs):
            raise UnexpectedResponse("malformed ORF outputs")
        return outputs

    # -- virtual devices -----------------------------------------------------------------------
    def create_vdevice(self, vdevice_id: bytes, bundle: bytes) -> None:
        """Register a virtual device's read-only bundle under its 16-byte vdeviceId."""
        vid = decode_vdevice_id(vdevice_id.hex())
        self._call("PUT", f"/vdevices/{vid}", json_body={"bundle": encode_bytes(bundle)})

    def vdevice(self, vdevice_id: bytes) -> VirtualDevice:
        body = self._json(self._call("GET", f"/vdevices/{decode_vdevice_id(vdevice_id.hex())}"))
        return _decoded(lambda: VirtualDevice.from_json(body))

    def vdevice_ids(self) -> list[bytes]:
        """The account's registered vdeviceIds (recovery-code correction's ``is_registered``)."""
        body = self._json(self._call("GET", "/vdevices"))
        return _decoded(lambda: [bytes.fromhex(decode_vdevice_id(v)) for v in body["vdevices"]])

    def delete_vdevice(self, vdevice_id: bytes) -> None:
        self._call("DELETE", f"/vdevices/{decode_vdevice_id(vdevice_id.hex())}")

    # -- mailbox -------------------------------------------------------------------------------
    def save(self, records: Sequence[StoredRecord]) -> int:
        """Insert or replace records, in batches of the server's maximum; how many saved."""
        saved = 0
        step = consts.LABYRINTH_MAX_RECORDS_PER_SAVE
        for start in range(0, len(records), step):
            batch = [r.to_json() for r in records[start:start + step]]
            saved += self._count(self._call("POST", "/messages", json_body={"records": batch}),
                                 "saved")
        return saved

    def load(self, query: LoadQuery | None = None) -> RecordPage:
        """One page, newest first; pass ``page.cursor`` in the next query to continue."""
        params = (query or LoadQuery()).to_params()
        body = self._json(self._call("GET", "/messages", params=params))
        return _decoded(lambda: RecordPage.from_json(body))

    def iter_records(self, query: LoadQuery | None = None) -> Iterator[StoredRecord]:
        """Every record the query matches, newest first, page by page."""
        q = query or LoadQuery(limit=consts.LABYRINTH_MAX_PAGE)
        last: tuple[int, str, str, str] | None = None
        while True:
            page = self.load(q)
            for record in page.records:  # strictly older each time: a server cannot loop us
                key = (record.timestamp, record.inbox_id, record.thread_id, record.message_id)
                if last is not None and key >= last:
                    raise UnexpectedResponse("records out of order")
                last = key
                yield record
            if page.cursor is None:
                return
            if not page.records or last != (page.cursor.timestamp, page.cursor.inbox_id,
                                             page.cursor.thread_id, page.cursor.message_id):
                raise UnexpectedResponse("cursor does not follow the page")
            q = LoadQuery(q.inbox_id, q.thread_id, q.message_id, q.since, q.until, q.limit,
                          page.cursor)

    def delete(self, keys: Sequence[RecordKey]) -> int:
        return self._count(self._call("POST", "/messages/delete",
                                      json_body={"keys": [k.to_json() for k in keys]}),
                           "deleted")

    # -- attachment references -----------------------------------------------------------------
    def put_reference(self, index: bytes, reference: AttachmentReference) -> None:
        self._call("PUT", f"/attachment-refs/{decode_ref_index(index.hex())}",
                   json_body=reference.to_json())

    def reference(self, index: bytes) -> AttachmentReference:
        body = self._json(self._call("GET", f"/attachment-refs/{decode_ref_index(index.hex())}"))
        return _decoded(lambda: AttachmentReference.from_json(body))

    def delete_reference(self, index: bytes) -> None:
        self._call("DELETE", f"/attachment-refs/{decode_ref_index(index.hex())}")
