"""The Labyrinth mailbox's HTTP adapter (issue #15): a Flask Blueprint under ``/v1/labyrinth``.

Every route needs a device credential (the delivery server's bearer token) and acts on that
device's own account only: the account is never named in a path, so no device can reach
another account's mailbox. Authorization of members (``"d<id>"``/``"v<hex>"``): a device may
write its own keys, MACs and shares and act for the account's virtual devices; entropy
messages are read by their addressee (the device itself, or a virtual device being restored).

What the server learns and keeps: opaque ciphertexts, MACs, public keys and metadata (ids,
timestamps, sizes). It holds one secret per member, its ORF share; the ORF's input never
reaches it and its output is returned, never stored or logged. Log lines carry event names
and counts only. The endpoints, their JSON and limits are in docs/labyrinth.md, "Server API".
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, Flask, Response, request

from e2ee_core.labyrinth import orf
from e2ee_core.labyrinth.errors import LabyrinthError
from e2ee_core.server import consts
from e2ee_core.server.consts import MEMORY_DB
from e2ee_core.server.errors import Forbidden, InvalidRequest, NotFound, RateLimited
from e2ee_core.server.http_json import json_response, read_json
from e2ee_core.server.labyrinth_store import LabyrinthStore
from e2ee_core.server.labyrinth_wire import (
    AttachmentReference,
    EvaluateRequest,
    EvolveRequest,
    LoadQuery,
    MemberKeys,
    OpenEpochRequest,
    decode_bundle,
    decode_epoch_id,
    decode_member,
    decode_membership_mac,
    decode_query_int,
    decode_record_keys,
    decode_records,
    decode_ref_index,
    decode_vdevice_id,
    device_member,
    member_device_id,
)
from e2ee_core.server.service import DeliveryService
from e2ee_core.server.wire import DeviceAddress, bearer_credential, encode_bytes
from service_kit.database import Database, Transaction

log = logging.getLogger("e2ee_core.server.labyrinth")

#: The server's HMAC key in the ORF is this prefix and the domain a request names.
ORF_SERVER_DOMAIN_PREFIX = b"labyrinth_orf_"


def _scalar(raw: bytes) -> orf.Scalar:
    try:
        return orf.Scalar(raw)
    except LabyrinthError:
        raise InvalidRequest("not a canonical non-zero Ristretto255 scalar") from None


class LabyrinthService:
    """Authorization and ORF work over a :class:`LabyrinthStore` for one delivery service."""

    def __init__(self, store: LabyrinthStore, delivery: DeliveryService) -> None:
        self.store = store
        self.delivery = delivery
        self.orf_points_per_minute = consts.LABYRINTH_ORF_POINTS_PER_DEVICE_PER_MINUTE
        delivery.device_removed_hooks.append(self.device_removed)

    def now_ms(self) -> int:
        return self.delivery.now_ms()

    # -- members -------------------------------------------------------------------------------
    def device_exists(self, username: str, device_id: int) -> bool:
        return self.delivery.store.credential_hash(username, device_id) is not None

    def is_member(self, username: str) -> Callable[[Transaction, str], bool]:
        """Whether a member name is a current device or a registered virtual device."""
        def check(tx: Transaction, member: str) -> bool:
            device_id = member_device_id(member)
            if device_id is not None:
                return self.device_exists(username, device_id)
            return self.store.vdevice_exists(tx, username, member)
        return check

    def may_act_for(self, actor: DeviceAddress, member: str) -> None:
        """A device acts for itself and for the account's virtual devices, for nobody else."""
        if member.startswith("v"):
            return
        if member != device_member(actor.device_id):
            raise Forbidden("a device acts only for itself and the account's virtual devices")

    def device_removed(self, username: str, device_id: int) -> None:
        """Revocation: the device's ORF share (and keys, MACs, entropy) are deleted."""
        self.store.remove_member(username, device_member(device_id))
        log.info("event=labyrinth_member_removed")

    # -- ORF -----------------------------------------------------------------------------------
    def init_share(self, actor: DeviceAddress) -> None:
        self.store.init_share(actor.username, device_member(actor.device_id),
                              orf.server_init().value)
        log.info("event=labyrinth_orf_init")

    def evolve_share(self, actor: DeviceAddress, req: EvolveRequest) -> None:
        self.may_act_for(actor, req.source)
        token = _scalar(req.token)
        target_device = member_device_id(req.target)
        if target_device is not None and not self.device_exists(actor.username, target_device):
            raise NotFound("no such device")
        if target_device is None and req.target[1:] not in self.store.vdevice_ids(
                actor.username):
            raise NotFound("no such virtual device")

        def evolve(share: bytes) -> bytes:
            return orf.server_evolve(orf.Scalar(share), token).value

        self.store.evolve_share(actor.username, req.source, req.target, evolve)
        log.info("event=labyrinth_orf_evolve")

    def evaluate(self, actor: DeviceAddress, req: EvaluateRequest) -> list[bytes]:
        share = self.store.share(actor.username, device_member(actor.device_id))
        if share is None:
            raise NotFound("this device has no ORF share")
        key = f"labyrinth-orf:{actor.username}.{actor.device_id}"
        now, window_ms = self.now_ms(), 60_000
        used = self.delivery.store.count_event(key, now, window_ms, len(req.blinded))
        if used > self.orf_points_per_minute:
            _, since = self.delivery.store.event_count(key, now, window_ms)
            log.info("event=labyrinth_orf_limited")
            raise RateLimited(retry_after=math.ceil((since + window_ms - now) / 1000))
        state = orf.Scalar(share)
        domain = ORF_SERVER_DOMAIN_PREFIX + req.domain.encode("ascii")
        try:
            outputs = [orf.server_map(state, domain, point) for point in req.blinded]
        except LabyrinthError:
            raise InvalidRequest("a blinded value is not a valid Ristretto255 point") from None
        log.info("event=labyrinth_orf_evaluate points=%d", len(outputs))
        return outputs


def _labyrinth_database(db_url: str, app: Flask) -> Database:
    """The delivery server's database; for the in-memory store a private temporary SQLite file
    (removed with the app), since ``:memory:`` SQLite would be one database per thread."""
    if db_url != MEMORY_DB:
        return Database(db_url)
    workdir = tempfile.TemporaryDirectory(prefix="labyrinth-")
    app.extensions["e2ee_labyrinth_tmp"] = workdir  # lives (and is cleaned up) with the app
    return Database(str(Path(workdir.name) / "labyrinth.db"))


def install(app: Flask, service: DeliveryService, db_url: str) -> LabyrinthService:
    """Add the Labyrinth routes to the delivery server ``app`` (called by ``create_app``)."""
    labyrinth = LabyrinthService(LabyrinthStore(_labyrinth_database(db_url, app)), service)
    if db_url != MEMORY_DB and labyrinth.store.sweep_removed_devices():
        log.warning("event=labyrinth_stale_shares_deleted")
    app.extensions["e2ee_labyrinth"] = labyrinth
    app.register_blueprint(_blueprint(labyrinth))
    return labyrinth


def labyrinth_of(app: Flask) -> LabyrinthService:
    """The :class:`LabyrinthService` of an app built by ``create_app``."""
    labyrinth: LabyrinthService = app.extensions["e2ee_labyrinth"]
    return labyrinth


def _blueprint(lab: LabyrinthService) -> Blueprint:
    bp = Blueprint("labyrinth", __name__, url_prefix="/v1/labyrinth")
    store = lab.store

    def actor() -> DeviceAddress:
        return lab.delivery.authenticate(
            bearer_credential(request.headers.get("Authorization", "")))

    def no_content() -> Response:
        return Response(status=204)

    # -- members -------------------------------------------------------------------------------
    @bp.get("/members")
    def list_members() -> Response:
        who = actor()
        return json_response({"members": [m.to_json() for m in store.members(who.username)]})

    @bp.put("/members/<member>")
    def put_member(member: str) -> Response:
        who = actor()
        name = decode_member(member)
        lab.may_act_for(who, name)
        store.put_member_keys(who.username, name, MemberKeys.from_json(read_json()))
        log.info("event=labyrinth_member_keys")
        return no_content()

    # -- epochs --------------------------------------------------------------------------------
    @bp.post("/epochs")
    def open_epoch() -> Response:
        who = actor()
        req = OpenEpochRequest.from_json(read_json())
        epoch_id = store.open_epoch(who.username, device_member(who.device_id), req,
                                    now_ms=lab.now_ms(), is_member=lab.is_member(who.username))
        log.info("event=labyrinth_epoch_opened members=%d", len(req.members))
        return json_response({"epoch_id": epoch_id}, 201)

    def member_arg(who: DeviceAddress) -> str:
        raw = request.args.get("member")
        name = device_member(who.device_id) if raw is None else decode_member(raw)
        lab.may_act_for(who, name)
        return name

    @bp.get("/epochs")
    def list_epochs() -> Response:
        who = actor()
        if not set(request.args) <= {"after_sequence", "limit", "member"}:
            raise InvalidRequest("query has unknown parameters")
        after = decode_query_int(request.args.get("after_sequence"), "after_sequence")
        limit = decode_query_int(request.args.get("limit"), "limit", minimum=1,
                                 maximum=consts.LABYRINTH_MAX_EPOCHS_PER_PAGE
                                 ) or consts.LABYRINTH_MAX_EPOCHS_PER_PAGE
        epochs = store.epochs(who.username, after_sequence=after, limit=limit,
                              member=member_arg(who))
        return json_response({"epochs": [e.to_json() for e in epochs]})

    @bp.get("/epochs/current")
    def current_epoch() -> Response:
        who = actor()
        return json_response(store.epoch(who.username, None, member_arg(who)).to_json())

    @bp.get("/epochs/<int:epoch_id>")
    def get_epoch(epoch_id: int) -> Response:
        who = actor()
        return json_response(store.epoch(who.username, decode_epoch_id(epoch_id),
                                 member_arg(who)).to_json())

    @bp.put("/epochs/current/members/<member>")
    def put_membership(member: str) -> Response:
        who = actor()
        name = decode_member(member)
        lab.may_act_for(who, name)
        if store.member_keys(who.username, name) is None:
            raise NotFound("the member has no Labyrinth keys")
        store.put_membership_mac(who.username, name, decode_membership_mac(read_json()))
        log.info("event=labyrinth_membership_mac")
        return no_content()

    # -- ORF -----------------------------------------------------------------------------------
    @bp.post("/orf/init")
    def orf_init() -> Response:
        lab.init_share(actor())
        return Response(status=201)

    @bp.post("/orf/evolve")
    def orf_evolve() -> Response:
        who = actor()
        lab.evolve_share(who, EvolveRequest.from_json(read_json()))
        return Response(status=201)

    @bp.post("/orf/evaluate")
    def orf_evaluate() -> Response:
        who = actor()
        outputs = lab.evaluate(who, EvaluateRequest.from_json(read_json()))
        return json_response({"outputs": [encode_bytes(o) for o in outputs]})

    # -- virtual devices -----------------------------------------------------------------------
    @bp.get("/vdevices")
    def list_vdevices() -> Response:
        who = actor()
        return json_response({"vdevices": store.vdevice_ids(who.username)})

    @bp.put("/vdevices/<vdevice_id>")
    def create_vdevice(vdevice_id: str) -> Response:
        who = actor()
        vid = decode_vdevice_id(vdevice_id)
        if store.member_keys(who.username, device_member(who.device_id)) is None:
            raise Forbidden("only a device enrolled in the mailbox registers virtual devices")
        store.create_vdevice(who.username, vid, decode_bundle(read_json()), who.device_id,
                             now_ms=lab.now_ms())
        log.info("event=labyrinth_vdevice_created")
        return Response(status=201)

    @bp.get("/vdevices/<vdevice_id>")
    def get_vdevice(vdevice_id: str) -> Response:
        who = actor()
        return json_response(store.vdevice(who.username, decode_vdevice_id(vdevice_id)).to_json())

    @bp.delete("/vdevices/<vdevice_id>")
    def delete_vdevice(vdevice_id: str) -> Response:
        who = actor()
        vid = decode_vdevice_id(vdevice_id)
        store.vdevice(who.username, vid)  # NotFound when there is none
        store.remove_member(who.username, "v" + vid)
        log.info("event=labyrinth_vdevice_deleted")
        return no_content()

    # -- mailbox -------------------------------------------------------------------------------
    @bp.post("/messages")
    def save() -> Response:
        who = actor()
        saved = store.save(who.username, decode_records(read_json()))
        log.info("event=labyrinth_saved records=%d", saved)
        return json_response({"saved": saved})

    @bp.get("/messages")
    def load() -> Response:
        who = actor()
        page = store.load(who.username, LoadQuery.from_params(request.args))
        return json_response(page.to_json())

    @bp.post("/messages/delete")
    def delete() -> Response:
        who = actor()
        deleted = store.delete(who.username, decode_record_keys(read_json()))
        log.info("event=labyrinth_deleted records=%d", deleted)
        return json_response({"deleted": deleted})

    # -- attachment references -----------------------------------------------------------------
    @bp.put("/attachment-refs/<index>")
    def put_reference(index: str) -> Response:
        who = actor()
        store.put_reference(who.username, decode_ref_index(index),
                            AttachmentReference.from_json(read_json()))
        return no_content()

    @bp.get("/attachment-refs/<index>")
    def get_reference(index: str) -> Response:
        who = actor()
        return json_response(store.reference(who.username, decode_ref_index(index)).to_json())

    @bp.delete("/attachment-refs/<index>")
    def delete_reference(index: str) -> Response:
        who = actor()
        store.delete_reference(who.username, decode_ref_index(index))
        return no_content()

    return bp

