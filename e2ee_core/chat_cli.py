"""``e2ee-chat``: try the multi-device Messenger by hand from a terminal.

    e2ee-chat --server http://127.0.0.1:8080 --state ~/.alice-phone register alice
    e2ee-chat --server http://127.0.0.1:8080 --state ~/.alice-laptop link alice
    e2ee-chat --state ~/.alice-phone send bob "hi bob"
    e2ee-chat --state ~/.bob receive --wait 5
    e2ee-chat --state ~/.alice-phone devices bob
    e2ee-chat --state ~/.alice-phone recovery-code create   (turns history on, shows the code)
    e2ee-chat --state ~/.alice-new recovery-code restore CODE
    e2ee-chat --state ~/.alice-new history bob --older   (older messages from the mailbox)
    e2ee-chat --state ~/.alice-phone check-keys   (this account's devices in the KT log)
    e2ee-chat --state ~/.alice-phone require-auditor URL NAMESPACE KEYHEX   (KT epochs only
        with that auditor's signature; e2ee-kt-audit keygen prints KEYHEX)
    e2ee-chat --state ~/.alice-phone verify bob (--number 60DIGITS | --compared)
    e2ee-chat --state ~/.alice-phone group create bob carol
    e2ee-chat --state ~/.alice-phone group send group:<hex> "hi all"

Each ``--state`` directory holds one device: ``messenger.db`` (keys, sessions, messages; 0600,
in a 0700 directory). ``register``/``link`` ask for the account password unless ``--password``
or ``$E2EE_CHAT_PASSWORD`` gives it. ``--server`` (or ``$E2EE_CHAT_SERVER``) is only needed
when enrolling; it is kept in the state. Exit status: 0 on success, 1 on an error (one line
on stderr, naming its kind, never a key or message text), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import os
import select
import sys
import threading
import time
from pathlib import Path

from e2ee_core.client import AccountBlocked, ContactChanged, Message, Messenger, Notice
from e2ee_core.client.safety import format_number
from e2ee_core.client.store import ClientStore
from e2ee_core.content import AttachmentPointer, Sticker, TimerChange, Unknown
from e2ee_core.errors import E2EEError

STATE_FILE = "messenger.db"
_SEEN_NOTICES = "cli_notices_seen"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="e2ee-chat", description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("E2EE_CHAT_SERVER"),
                        help="delivery server URL (register/link only)")
    parser.add_argument("--state", type=Path, required=True,
                        help="directory holding this device's state")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("register", "create an account with this device as device 1"),
                           ("link", "add this device to an existing account")):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("name")
        cmd.add_argument("--password", help="account password (else asked)")
    sub.add_parser("whoami", help="this device's account and device id")
    send = sub.add_parser("send", help="send a text to an account or group:<id>")
    send.add_argument("to")
    send.add_argument("text")
    sticker = sub.add_parser("sticker", help="send a sticker id")
    sticker.add_argument("to")
    sticker.add_argument("sticker_id")
    sendfile = sub.add_parser("send-file", help="send a file as an encrypted attachment")
    sendfile.add_argument("to")
    sendfile.add_argument("path", type=Path)
    sendfile.add_argument("--type", default="application/octet-stream", dest="content_type")
    save = sub.add_parser("save", help="download and decrypt an attachment")
    save.add_argument("conversation")
    save.add_argument("message_id", help="hex id shown by history")
    save.add_argument("path", type=Path)
    receive = sub.add_parser("receive", help="receive, decrypt and show new messages (shown "
                                             "messages are marked read: disappearing timers "
                                             "start and the senders get a read receipt)")
    receive.add_argument("--unread", action="store_true",
                         help="show without marking read (no receipt, timers do not start)")
    receive.add_argument("--wait", type=float, default=0.0, help="long-poll seconds (<= 25)")
    sub.add_parser("chats", help="conversations, most recent first, with unread counts")
    open_ = sub.add_parser("open", help="a conversation, live: incoming messages as they "
                                        "arrive (marked read), each line typed is sent; "
                                        "/quit or end of input leaves")
    open_.add_argument("conversation")
    read = sub.add_parser("read", help="mark a conversation's unread messages read")
    read.add_argument("conversation")
    history = sub.add_parser("history", help="stored messages (with ids); --older loads older "
                                             "ones from the encrypted mailbox first")
    history.add_argument("conversation", nargs="?")
    history.add_argument("--older", action="store_true",
                         help="load older messages of the conversation from the mailbox")
    history.add_argument("--limit", type=int, default=50, help="how many (with --older)")
    history.add_argument("--enable", action="store_true",
                         help="save this device's messages in the mailbox from now on")
    recovery = sub.add_parser("recovery-code", help="the mailbox's recovery codes")
    rsub = recovery.add_subparsers(dest="recovery_command", required=True)
    rsub.add_parser("create", help="a new recovery code (turns history on; shown once)")
    rrestore = rsub.add_parser("restore", help="read the history with a recovery code (up to "
                                               "three wrong characters are corrected)")
    rrestore.add_argument("code")
    devices = sub.add_parser("devices", help="an account's devices and safety numbers")
    devices.add_argument("name")
    verify = sub.add_parser("verify", help="mark an account verified")
    verify.add_argument("name")
    how = verify.add_mutually_exclusive_group(required=True)
    how.add_argument("--number", help="the combined safety number you compared (60 digits, "
                                      "as `devices NAME` shows it on the other side)")
    how.add_argument("--compared", action="store_true",
                     help="you compared the number some other way (side by side, a QR code)")
    accept = sub.add_parser("accept", help="accept a verified contact's device change")
    accept.add_argument("name")
    sub.add_parser("notices", help="all device-change notices")
    sub.add_parser("check-keys", help="check this account's devices in the server's key-"
                                      "transparency log now (receive also does, every 15 min)")
    auditor = sub.add_parser("require-auditor", help="from now on accept key-transparency "
                             "epochs only with this auditor's signature (e2ee-kt-audit serve)")
    auditor.add_argument("url", help="the auditor's URL")
    auditor.add_argument("namespace", help="the server's log name in the auditor's signatures")
    auditor.add_argument("keys", nargs="+", metavar="KEYHEX",
                         help="the auditor's Ed25519 public key(s), hex")
    block = sub.add_parser("block", help="block an account: nothing is sent to it, and what "
                                         "it sends is dropped unread (kept on this device)")
    block.add_argument("name")
    unblock = sub.add_parser("unblock", help="unblock an account")
    unblock.add_argument("name")
    sub.add_parser("blocked", help="the accounts this device blocked")
    remove = sub.add_parser("remove-device", help="remove a device of this account")
    remove.add_argument("device_id", type=int)
    timer = sub.add_parser("timer", help="disappearing-message timer: SECONDS or off")
    timer.add_argument("to")
    timer.add_argument("seconds")
    react = sub.add_parser("react", help="react to a message (emoji, or 'none' to remove)")
    react.add_argument("conversation")
    react.add_argument("message_id")
    react.add_argument("emoji")
    sub.add_parser("sweep", help="delete expired disappearing messages now")
    group = sub.add_parser("group", help="groups with Sender Keys")
    gsub = group.add_subparsers(dest="group_command", required=True)
    gcreate = gsub.add_parser("create", help="create a group with these accounts")
    gcreate.add_argument("members", nargs="+")
    gadd = gsub.add_parser("add", help="add accounts to a group")
    gadd.add_argument("group")
    gadd.add_argument("members", nargs="+")
    gremove = gsub.add_parser("remove", help="remove accounts from a group")
    gremove.add_argument("group")
    gremove.add_argument("members", nargs="+")
    gleave = gsub.add_parser("leave", help="leave a group")
    gleave.add_argument("group")
    gsend = gsub.add_parser("send", help="send a text to a group")
    gsend.add_argument("group")
    gsend.add_argument("text")
    gsub.add_parser("list", help="groups and their members")
    return parser


def _describe(message: Message) -> str:
    body = message.body
    if message.deleted or body is None:
        what = "(deleted)"
    elif message.text is not None:
        what = message.text + (" (edited)" if message.edited else "")
    elif isinstance(body, Sticker):
        what = f"[sticker {body.sticker_id}]"
    elif isinstance(body, AttachmentPointer):
        what = f"[attachment {body.file_name or '-'} {body.content_type} {body.size} bytes]"
    elif isinstance(body, TimerChange):
        what = ("[disappearing messages off]" if body.seconds is None
                else f"[disappearing messages: {body.seconds} s]")
    elif isinstance(body, Unknown):
        what = "[a message type this version does not know]"
    else:
        what = f"[{type(body).__name__}]"
    arrow = "->" if message.outgoing else "<-"
    reactions = "".join(f" {e}{n}" for n, e in sorted(message.reactions.items()))
    status = f" ({message.status})" if message.status and not message.deleted else ""
    return f"[{message.conversation}] {arrow} {message.sender}/{message.sender_device}: " \
           f"{what}{reactions}{status}"


# Key-transparency notices (e2ee_core.client.transparency), in words: {who} is name/device.
_KT_NOTICES = {
    "kt_unknown_device": "key transparency: {who} is published for your account but was never "
                         "announced to this device; remove it if it is not yours",
    "kt_key_changed": "key transparency: {who} of your account is published with another key",
    "kt_key_mismatch": "key transparency: the server's key for {who} is not the published one "
                       "(refused, no session started)",
    "kt_proof_failed": "key transparency: the server's proof for {name} does not verify "
                       "(refused)",
    "kt_rollback": "key transparency: the server answered from an older epoch (refused)",
    "kt_forked_view": "key transparency: the server showed two different directories "
                      "(refused)",
    "kt_directory_key_changed": "key transparency: the directory's key changed (refused)",
    "kt_stale": "key transparency: the server's directory has not moved for an hour (a stale "
                "view, or the server stopped publishing)",
    "kt_not_audited": "key transparency: the auditor has not signed the server's current epoch "
                      "(refused; try again after the auditor's next run)",
}


def _describe_notice(notice: Notice) -> str:
    who = f"{notice.username}/{notice.device_id}"
    text = _KT_NOTICES.get(notice.kind)
    if text is not None:
        return "! " + text.format(who=who, name=notice.username)
    return f"! {notice.kind.replace('_', ' ')}: {who}"


def _print_notices(messenger: Messenger, everything: bool = False) -> None:
    _print_batch(messenger, [], everything=everything)


def _print_batch(messenger: Messenger, messages: list[Message], *,
                 everything: bool = False) -> None:
    """Messages and the device notices not shown yet, in the order they happened: a notice
    about a device comes before the message that revealed it."""
    seen = 0 if everything else int(messenger.store.get_meta(_SEEN_NOTICES) or 0)
    notices: list[Notice] = messenger.notices(seen)
    pending = list(notices)
    for message in messages:
        while pending and pending[0].at_ms <= message.received_at_ms:
            print(_describe_notice(pending.pop(0)))
        current = message
        if message.outgoing:  # a receipt later in the same batch may have changed its status
            try:
                current = messenger.message(message.conversation, message.message_id)
            except E2EEError:
                pass  # deleted or expired within the batch: shown as it was
        print(_describe(current))
    for notice in pending:
        print(_describe_notice(notice))
    if notices:
        messenger.store.set_meta(_SEEN_NOTICES, str(notices[-1].id))


def _open(messenger: Messenger, conversation: str) -> None:
    """The live mode: the push channel delivers, stdin sends (on the same thread)."""
    stop = threading.Event()

    sent: dict[bytes, str] = {}  # messages sent in this session and their status shown
    last_check = [time.monotonic()]

    def show(batch: list[Message]) -> None:
        _print_batch(messenger, batch)
        seen = [m.message_id for m in batch
                if m.conversation == conversation and not m.outgoing and not m.deleted]
        if seen:
            messenger.mark_read(conversation, seen)
        sys.stdout.flush()

    def statuses() -> None:
        """Delivery and read receipts arrive as content of their own: show the change."""
        for message_id, shown in list(sent.items()):
            try:
                message = messenger.message(conversation, message_id)
            except E2EEError:  # deleted or expired meanwhile
                del sent[message_id]
                continue
            if message.status and message.status != shown:
                sent[message_id] = message.status
                what = message.text if message.text is not None else "message"
                print(f"[{conversation}] -> {what!r} {message.status}", flush=True)
                if message.status == "read":
                    del sent[message_id]

    def typed() -> None:
        while not stop.is_set() and select.select([sys.stdin], [], [], 0)[0]:
            line = sys.stdin.readline()
            if not line or line.strip() in ("/quit", "/q"):
                stop.set()
                return
            text = line.rstrip("\n")
            if text:
                content = messenger.send_text(conversation, text)
                sent[content.message_id] = "sent"
                print(f"[{conversation}] -> sent", flush=True)
        if sent and time.monotonic() - last_check[0] >= 0.5:
            last_check[0] = time.monotonic()
            statuses()

    backlog = messenger.unread(conversation)
    show(backlog)
    print(f"open {conversation}: type a message and Enter to send; /quit to leave", flush=True)
    messenger.listen(show, stop=stop, on_idle=typed, idle_every=0.1)


def _password(args: argparse.Namespace) -> str:
    if args.password:
        return str(args.password)
    env = os.environ.get("E2EE_CHAT_PASSWORD")
    if env:
        return env
    return getpass.getpass("account password: ")


def _state_file(state: Path, *, create: bool) -> Path:
    if create:
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
    return state / STATE_FILE


def _enrol(args: argparse.Namespace) -> int:
    if not args.server:
        print("error: --server (or $E2EE_CHAT_SERVER) is needed to enrol a device",
              file=sys.stderr)
        return 2
    path = _state_file(args.state, create=True)
    if path.exists() and ClientStore(str(path)).get_meta("username") is not None:
        print("error: this --state already holds a device", file=sys.stderr)
        return 1
    enrol = Messenger.register if args.command == "register" else Messenger.link
    messenger = enrol(args.server, args.name, _password(args), state=path)
    print(f"{args.command}ed {messenger.username}, device {messenger.device_id}")
    messenger.close()
    return 0


def _run(args: argparse.Namespace, messenger: Messenger) -> int:
    command = args.command
    if command == "whoami":
        print(f"{messenger.username}, device {messenger.device_id}")
    elif command == "send":
        messenger.send_text(args.to, args.text)
        print("sent")
    elif command == "sticker":
        messenger.send(args.to, Sticker(args.sticker_id))
        print("sent")
    elif command == "send-file":
        messenger.send_attachment(args.to, args.path.read_bytes(),
                                  content_type=args.content_type, file_name=args.path.name)
        print("sent")
    elif command == "save":
        message = messenger.message(args.conversation, bytes.fromhex(args.message_id))
        if not isinstance(message.body, AttachmentPointer):
            print("error: that message is not an attachment", file=sys.stderr)
            return 1
        args.path.write_bytes(messenger.download_attachment(message.body))
        print(f"saved {message.body.size} bytes")
    elif command == "receive":
        seen: dict[str, list[bytes]] = {}
        got = messenger.receive(wait=args.wait)
        _print_batch(messenger, got)
        for message in got:
            if not message.outgoing and not message.deleted:
                seen.setdefault(message.conversation, []).append(message.message_id)
        if not args.unread:
            for conversation, ids in seen.items():
                messenger.mark_read(conversation, ids)  # the user has seen them
    elif command == "open":
        _open(messenger, args.conversation)
    elif command == "chats":
        for chat in messenger.chats():
            state = f"{chat.unread} unread" if chat.unread else "read"
            print(f"{chat.conversation}  {state}  last: {_describe(chat.last)}")
    elif command == "read":
        pending = messenger.unread(args.conversation)
        if pending:
            messenger.mark_read(args.conversation, [m.message_id for m in pending])
        print(f"marked {len(pending)} read")
    elif command == "recovery-code":
        _recovery_code(args, messenger)
    elif command == "history":
        if args.enable:
            member = messenger.enable_history()
            print("history on" + ("" if member else ": waiting for another device of this "
                                  "account to admit this one (it does on its next receive)"))
        if args.older:
            if args.conversation is None:
                print("error: --older needs a conversation", file=sys.stderr)
                return 1
            loaded = messenger.load_history(args.conversation, max(1, args.limit))
            print(f"{len(loaded)} older messages loaded")
        for message in messenger.messages(args.conversation):
            print(f"{message.message_id.hex()} {_describe(message)}")
    elif command == "devices":
        shown = messenger.devices(args.name)
        for device in shown.devices:
            print(f"device {device.device_id}: {format_number(device.safety_number)}")
        state = "verified" if shown.verified else "not verified"
        if shown.changed:
            state += ", CHANGED since verification"
        print(f"combined safety number ({state}):")
        print(format_number(shown.combined_safety_number))
        _print_notices(messenger)
    elif command == "verify":
        # The number is checked against this device's own view; --compared is the user's word.
        shown = messenger.verify(args.name, args.number.replace(" ", "") if args.number
                                 else None)
        print(f"verified {shown.username}: {len(shown.devices)} devices")
    elif command == "accept":
        messenger.accept_changes(args.name)
        print(f"accepted the changes of {args.name} (now not verified)")
    elif command == "notices":
        _print_notices(messenger, everything=True)
    elif command == "check-keys":
        found = messenger.check_transparency()
        _print_notices(messenger)
        print("key transparency: " + (f"{len(found)} new notices" if found else "all devices "
                                      "of this account are known to this device"))
    elif command == "require-auditor":
        try:
            keys = [bytes.fromhex(k) for k in args.keys]
            messenger.require_auditor(args.url, args.namespace, keys)
        except ValueError:
            print("error: auditor keys are 32-byte Ed25519 public keys in hex", file=sys.stderr)
            return 2
        print(f"key transparency: epochs now need the signature of the auditor at {args.url}")
    elif command == "block":
        messenger.block(args.name)
        print(f"blocked {args.name}")
    elif command == "unblock":
        messenger.unblock(args.name)
        print(f"unblocked {args.name}")
    elif command == "blocked":
        for name in messenger.blocked():
            print(name)
    elif command == "remove-device":
        messenger.remove_device(args.device_id)
        print(f"removed device {args.device_id}")
    elif command == "timer":
        seconds = None if args.seconds == "off" else int(args.seconds)
        messenger.set_timer(args.to, seconds)
        print("timer off" if seconds is None else f"timer {seconds} s")
    elif command == "react":
        emoji = None if args.emoji == "none" else args.emoji
        messenger.react(args.conversation, bytes.fromhex(args.message_id), emoji)
        print("sent")
    elif command == "sweep":
        print(f"deleted {len(messenger.sweep())} expired messages")
    elif command == "group":
        return _group(args, messenger)
    return 0


def _recovery_code(args: argparse.Namespace, messenger: Messenger) -> None:
    if args.recovery_command == "create":
        if not messenger.history.enabled and not messenger.enable_history():
            print("error: this device is not a member of the mailbox yet", file=sys.stderr)
            return
        print("recovery code (write it down; it is shown only once):")
        print(messenger.create_recovery_code())
    else:
        epochs = messenger.restore_history(args.code)
        loaded = messenger.load_all_history()
        print(f"history restored: {len(loaded)} messages, {epochs} epoch(s) of keys")


def _group(args: argparse.Namespace, messenger: Messenger) -> int:
    sub = args.group_command
    if sub == "create":
        print(messenger.create_group(args.members))
    elif sub == "add":
        messenger.add_members(args.group, args.members)
        print("added")
    elif sub == "remove":
        messenger.remove_members(args.group, args.members)
        print("removed")
    elif sub == "leave":
        messenger.leave_group(args.group)
        print("left")
    elif sub == "send":
        messenger.send_text(args.group, args.text)
        print("sent")
    elif sub == "list":
        for group in messenger.groups():
            print(f"{group}: {' '.join(messenger.group_members(group))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one ``e2ee-chat`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command in ("register", "link"):
            return _enrol(args)
        path = _state_file(args.state, create=False)
        if not path.exists():
            print("error: no device in this --state (register or link first)",
                  file=sys.stderr)
            return 1
        messenger = Messenger.open(path)
        try:
            return _run(args, messenger)
        finally:
            messenger.close()
    except ContactChanged:
        print("error: the devices of a verified contact changed: check `devices`, then "
              "`verify` or `accept`", file=sys.stderr)
        return 1
    except AccountBlocked:
        print("error: you blocked this account: `unblock` it first", file=sys.stderr)
        return 1
    except E2EEError as exc:
        print(f"error: {_plain(exc)}", file=sys.stderr)
        return 1
    except ValueError:
        print("error: a value given is not valid (see --help)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot use a file or the network ({exc.strerror or 'I/O error'})",
              file=sys.stderr)
        return 1


_PLAIN = {
    "DeviceRemoved": "this device was removed from its account",
    "ServerUnreachable": "the server cannot be reached",
    "AuthenticationFailed": "the server did not accept this device's credential (another "
                            "server at that address?); nothing was changed",
    "TooManyAttempts": "too many attempts: wait a while and try again",
    "RateLimited": "too many requests: wait a while and try again",
    "QueueFull": "the recipient's message queue is full: try again later",
    "SafetyNumberMismatch": "that number is not the safety number this device shows: do not "
                            "mark the contact verified",
    "NotFound": "no such account",
    "HistoryNotEnabled": "history is not on for this device (`history --enable`), or no other "
                         "device admitted it yet",
    "HistoryUnavailable": "the mailbox served history this device cannot verify; nothing was "
                          "changed",
    "RecoveryCodeUncorrectable": "this is not a recovery code of this account (too many wrong "
                                 "characters?)",
    "RecoveryCodeAmbiguous": "this recovery code matches more than one: type it again",
    "InvalidRecoveryCode": "this is not a recovery code",
    "EpochChainError": "the mailbox's epoch chain does not verify; nothing was changed",
}


def _plain(exc: Exception) -> str:
    """An error in plain words: what happened, never a class name or user data."""
    for cls in type(exc).__mro__:
        if cls.__name__ in _PLAIN:
            return _PLAIN[cls.__name__]
    text = str(exc)
    return text if text and text != type(exc).__name__ else "the request failed"


if __name__ == "__main__":
    sys.exit(main())
