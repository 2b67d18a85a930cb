"""A typed HTTP client for the delivery server (requests-based).

The later ``Messenger`` client and the tests drive the server only through this class. Every
failure surfaces as a :class:`~e2ee_core.server.errors.ServerError` subclass: the server's
problem responses map back to the class that raised them (e.g. a 409 ``mismatched-devices``
becomes :class:`~e2ee_core.server.errors.MismatchedDevices` with its ``missing``/``extra``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests

from e2ee_core.server.errors import (
    AuthenticationFailed,
    InvalidRequest,
    MismatchedDevices,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServerUnreachable,
    UnexpectedResponse,
)
from e2ee_core.server.kt_wire import KtEpoch, KtHead, KtLookup, lookup_member
from e2ee_core.server.labyrinth_errors import labyrinth_error_for_problem_type
from e2ee_core.server.wire import (
    AccountRequest,
    AckRequest,
    DeviceAddress,
    DeviceCredential,
    DeviceInfo,
    DeviceKeys,
    Envelope,
    MultiSendRequest,
    OutgoingEnvelope,
    PreKeyBundle,
    PreKeyCount,
    PreKeyUpload,
    SendRequest,
    decode_device_id,
    decode_int,
    decode_username,
    parse_credential,
)

T = TypeVar("T")


@dataclass(frozen=True)
class ReceivedBatch:
    """One receive: envelopes oldest first; ``more`` when the queue holds further ones."""

    envelopes: list[Envelope]
    more: bool
    #: The server's hint: this device has few one-time prekeys left, upload more.
    prekeys_low: bool = False


@dataclass(frozen=True)
class AttachmentRef:
    """Where an uploaded blob lives on the server and until when."""

    id: str
    size: int
    expires_at_ms: int


def _decoded(what: Callable[[], T]) -> T:
    """Run a response decoder; a malformed answer is the server's fault, not the caller's."""
    try:
        return what()
    except (InvalidRequest, KeyError, TypeError, ValueError):
        raise UnexpectedResponse("malformed response body") from None


def _addresses(items: Any) -> list[tuple[str, int]]:
    if not isinstance(items, list):
        raise UnexpectedResponse("malformed device list")
    try:
        return [(decode_username(i["username"]), decode_device_id(i["device_id"]))
                for i in items]
    except (InvalidRequest, KeyError, TypeError):
        raise UnexpectedResponse("malformed device list") from None


def error_from_problem(status: int, body: Any, retry_after: str | None = None) -> ServerError:
    """The typed error a problem document names (an HTTP answer's body, or a push channel send
    result's ``problem``); :class:`UnexpectedResponse` when it names none."""
    if isinstance(body, dict):
        cls = labyrinth_error_for_problem_type(str(body.get("type", "")))
        if cls is MismatchedDevices:
            return MismatchedDevices(_addresses(body.get("missing")),
                                     _addresses(body.get("extra")))
        if cls is not None and issubclass(cls, RateLimited):
            raw = retry_after if retry_after is not None else str(body.get("retry_after", "1"))
            # ASCII digits only: str.isdigit() is also true for '²' (which int() refuses)
            return cls(retry_after=int(raw) if raw.isascii() and raw.isdigit() else 1)
        if cls is not None:
            detail = body.get("detail")
            return cls(detail if isinstance(detail, str) else None)
    if status == 413:  # the server stack refuses an oversized body before the app
        return PayloadTooLarge()
    return UnexpectedResponse(f"status {status}")


class ServerClient:
    """One device's (or an anonymous) connection to the delivery server."""

    def __init__(self, base_url: str, credential: DeviceCredential | None = None, *,
                 session: requests.Session | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.credential = credential
        self.timeout = timeout
        self._session = session or requests.Session()

    def __repr__(self) -> str:  # never print the credential
        who = None if self.credential is None else self.address
        return f"ServerClient({self.base_url!r}, device={who!r})"

    @property
    def address(self) -> DeviceAddress:
        """The authenticated device (raises :class:`AuthenticationFailed` when anonymous)."""
        if self.credential is None:
            raise AuthenticationFailed("client has no device credential")
        return DeviceAddress(self.credential.username, self.credential.device_id)

    def with_credential(self, credential: DeviceCredential) -> ServerClient:
        """A client for another device on the same server (sharing the connection pool)."""
        return ServerClient(self.base_url, credential, session=self._session,
                            timeout=self.timeout)

    def close(self) -> None:
        self._session.close()

    # -- transport ------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, json_body: Any = None,
                 data: bytes | None = None, params: dict[str, str] | None = None,
                 auth: bool = True, timeout: float | None = None) -> requests.Response:
        headers: dict[str, str] = {}
        if auth:
            if self.credential is None:
                raise AuthenticationFailed("client has no device credential")
            headers["Authorization"] = f"Bearer {self.credential.credential}"
        if data is not None:
            headers["Content-Type"] = "application/octet-stream"
        try:
            resp = self._session.request(method, self.base_url + path, json=json_body,
                                         data=data, params=params, headers=headers,
                                         timeout=timeout or self.timeout)
        except requests.RequestException:
            raise ServerUnreachable() from None
        if resp.status_code >= 400:
            raise self._error(resp)
        return resp

    @staticmethod
    def _error(resp: requests.Response) -> ServerError:
        body = None
        if resp.headers.get("Content-Type", "").startswith("application/problem+json"):
            try:
                body = resp.json()
            except ValueError:
                body = None
        return error_from_problem(resp.status_code, body, resp.headers.get("Retry-After"))

    @staticmethod
    def _json(resp: requests.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise UnexpectedResponse("response is not JSON") from None

    # -- accounts and devices -------------------------------------------------------------------
    def health(self) -> bool:
        """True when the server answers its health check."""
        body = self._json(self._request("GET", "/v1/health", auth=False))
        return isinstance(body, dict) and body.get("status") == "ok"

    def register(self, username: str, password: str, device: DeviceKeys) -> DeviceCredential:
        """Create an account with this device as device 1; the client then acts as it."""
        body = AccountRequest(username, password, device).to_json()
        resp = self._request("POST", "/v1/accounts", json_body=body, auth=False)
        self.credential = _decoded(lambda: DeviceCredential.from_json(self._json(resp)))
        return self.credential

    def add_device(self, username: str, password: str, device: DeviceKeys) -> DeviceCredential:
        """Link a new device to an existing account (needs the account password)."""
        body = AccountRequest(username, password, device).to_json()
        resp = self._request("POST", "/v1/devices", json_body=body, auth=False)
        self.credential = _decoded(lambda: DeviceCredential.from_json(self._json(resp)))
        return self.credential

    def list_devices(self, username: str) -> list[DeviceInfo]:
        """The account's current devices with their identity keys."""
        return self.list_devices_proved(username)[0]

    def list_devices_proved(self, username: str) -> tuple[list[DeviceInfo], KtLookup | None]:
        """:meth:`list_devices` with the key-transparency lookup proof of the account's
        device list (None when the server sent none)."""
        body = self._json(self._request("GET", f"/v1/devices/{decode_username(username)}"))
        return _decoded(lambda: ([DeviceInfo.from_json(d) for d in body["devices"]],
                                 lookup_member(body)))

    def remove_device(self, device_id: int) -> None:
        """Unlink one of this account's devices (this one included)."""
        self._request("DELETE", f"/v1/devices/{decode_device_id(device_id)}")

    # -- keys -----------------------------------------------------------------------------------
    def upload_prekeys(self, upload: PreKeyUpload) -> None:
        """Replenish one-time prekeys and/or rotate the signed prekeys."""
        self._request("PUT", "/v1/keys", json_body=upload.to_json())

    def prekey_count(self) -> PreKeyCount:
        """One-time prekeys this device has left on the server."""
        body = self._json(self._request("GET", "/v1/keys/count"))
        return _decoded(lambda: PreKeyCount.from_json(body))

    def fetch_bundles(self, username: str, device_id: int | None = None) -> list[PreKeyBundle]:
        """One bundle per current device of ``username`` (or for one device); each fetch
        consumes one-time prekeys on the server."""
        return self.fetch_bundles_proved(username, device_id)[0]

    def fetch_bundles_proved(self, username: str, device_id: int | None = None
                             ) -> tuple[list[PreKeyBundle], KtLookup | None]:
        """:meth:`fetch_bundles` with the key-transparency lookup proof of the account's
        device list (None when the server sent none)."""
        path = f"/v1/keys/{decode_username(username)}"
        if device_id is not None:
            path += f"/{decode_device_id(device_id)}"
        body = self._json(self._request("GET", path))
        return _decoded(lambda: ([PreKeyBundle.from_json(b) for b in body["bundles"]],
                                 lookup_member(body)))

    # -- key transparency -----------------------------------------------------------------------
    def kt_head(self) -> KtHead:
        """The directory's latest epoch, its root hash and the VRF public key."""
        body = self._json(self._request("GET", "/v1/kt/head", auth=False))
        return _decoded(lambda: KtHead.from_json(body))

    def kt_epoch(self, epoch: int) -> KtEpoch:
        """The root hash the server publishes for ``epoch`` (NotFound when unknown)."""
        path = f"/v1/kt/epochs/{decode_int(epoch, 'epoch')}"
        body = self._json(self._request("GET", path, auth=False))
        return _decoded(lambda: KtEpoch.from_json(body))

    def kt_append_only(self, start: int, end: int) -> bytes:
        """AKD's AppendOnlyProof (protobuf bytes) from epoch ``start`` to ``end``."""
        resp = self._request("GET", "/v1/kt/append-only", auth=False,
                             params={"start": str(decode_int(start, "start")),
                                     "end": str(decode_int(end, "end"))})
        return resp.content

    def kt_history(self, username: str,
                   most_recent: int | None = None) -> tuple[KtEpoch, bytes]:
        """The history proof of ``username``'s device list (protobuf bytes: complete, or its
        ``most_recent`` versions) and the epoch it was made against."""
        params = None if most_recent is None else {
            "most_recent": str(decode_int(most_recent, "most_recent", minimum=1))}
        resp = self._request("GET", f"/v1/kt/history/{decode_username(username)}",
                             params=params)
        raw = resp.headers.get("KT-Epoch", "")
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 19):
            raise UnexpectedResponse("malformed KT-Epoch header")
        return _decoded(lambda: (KtEpoch.from_json({
            "epoch": int(raw), "root_hash": resp.headers.get("KT-Root-Hash", "")}),
            resp.content))

    # -- envelopes ------------------------------------------------------------------------------
    def send(self, recipient: str, messages: Sequence[OutgoingEnvelope],
             expires_at_ms: int | None = None) -> int:
        """Submit one envelope per device of ``recipient`` and per other own device.

        Raises :class:`MismatchedDevices` (nothing queued) when the set is not exact.
        """
        req = SendRequest(recipient, tuple(messages), expires_at_ms)
        body = self._json(self._request("POST", "/v1/messages", json_body=req.to_json()))
        return _decoded(lambda: decode_int(body["accepted"], "accepted"))

    def send_multi(self, recipients: Sequence[str], messages: Sequence[OutgoingEnvelope],
                   expires_at_ms: int | None = None) -> int:
        """One message to several accounts (a group message) in one request: one envelope per
        device of every recipient and per other own device, all queued or none
        (:class:`MismatchedDevices` lists every difference)."""
        req = MultiSendRequest(tuple(recipients), tuple(messages), expires_at_ms)
        body = self._json(self._request("POST", "/v1/messages/multi",
                                        json_body=req.to_json()))
        return _decoded(lambda: decode_int(body["accepted"], "accepted"))

    def receive(self, wait: float = 0.0) -> ReceivedBatch:
        """Queued envelopes; long-polls up to ``wait`` seconds when the queue is empty."""
        resp = self._request("GET", "/v1/messages", params={"wait": f"{wait:.3f}"},
                             timeout=self.timeout + wait)
        body = self._json(resp)
        return _decoded(lambda: ReceivedBatch(
            [Envelope.from_json(e) for e in body["envelopes"]], bool(body["more"]),
            body.get("prekeys_low") is True))

    def acknowledge(self, ids: Iterable[int], refused: Iterable[int] = ()) -> int:
        """Delete processed envelopes from this device's queue; returns how many were there.
        ``refused``: those this device could not open or will not accept (their senders do not
        become contacts that hear of this account's device changes)."""
        req = AckRequest(tuple(ids), tuple(refused))
        body = self._json(self._request("POST", "/v1/messages/ack", json_body=req.to_json()))
        return _decoded(lambda: decode_int(body["deleted"], "deleted"))

    # -- attachments ----------------------------------------------------------------------------
    def upload_attachment(self, blob: bytes) -> AttachmentRef:
        """Upload an already encrypted and padded blob."""
        body = self._json(self._request("POST", "/v1/attachments", data=blob))
        return _decoded(lambda: AttachmentRef(str(body["id"]), decode_int(body["size"], "size"),
                                              decode_int(body["expires_at_ms"], "expires")))

    def download_attachment(self, attachment_id: str) -> bytes:
        if not attachment_id.isalnum():
            raise InvalidRequest("malformed attachment id")
        return self._request("GET", f"/v1/attachments/{attachment_id}").content


def credential_from_token(token: str) -> DeviceCredential:
    """Rebuild a :class:`DeviceCredential` from its token string (e.g. read from a key file)."""
    username, device_id, _secret = parse_credential(token)
    return DeviceCredential(username, device_id, token)
