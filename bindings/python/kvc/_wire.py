"""kvc's client wire protocol (kvc-node(1), "WIRE PROTOCOL"; lib/kvc/wire/messages.cc).

A frame is a 4-byte big-endian payload length and one msgpack value [kind, body]; bodies are
maps from small integer field ids to values (a field at its default is left out, unknown ids
are skipped). One Connection is one TCP connection (TLS inside it with certificates) that has
passed the handshake: the hello and its reply. Blocking sockets; not thread-safe.
"""

import select
import socket
import ssl
import struct
import time

from . import _msgpack
from ._errors import error_for, FailedPrecondition, InvalidArgument, Unavailable

PROTOCOL_VERSION = 1
ROLE_CLIENT = 2
MAX_FRAME_BYTES = 64 << 20  # what this client accepts from a member (the C++ client's default)

# Frame kinds (6, the auth frame of the retired HMAC challenge, is gone).
K_HELLO, K_HELLO_REPLY, K_RAFT, K_REQUEST, K_RESPONSE = 1, 2, 3, 4, 5

# Ops (wire::Op).
OP_GET, OP_RANGE, OP_PUT, OP_DELETE, OP_CAS, OP_WATCH, OP_WATCH_CANCEL = 1, 2, 3, 4, 5, 6, 7
OP_LEASE_GRANT, OP_LEASE_REVOKE, OP_LEASE_KEEP_ALIVE = 20, 21, 22
WRITE_OPS = frozenset({OP_PUT, OP_DELETE, OP_CAS, OP_LEASE_GRANT, OP_LEASE_REVOKE})

# Hello fields (11: a named token, kvc-permissions(5)).
HELLO_VERSION, HELLO_ROLE, HELLO_CLUSTER_ID, HELLO_NAME, HELLO_SOFTWARE = 1, 2, 3, 5, 6
HELLO_TOKEN = 11
# Hello reply fields.
REPLY_CODE, REPLY_MESSAGE, REPLY_CLUSTER_ID, REPLY_NAME = 1, 2, 3, 5
REPLY_CLIENT_ADDR, REPLY_MAX_FRAME, REPLY_MAX_REQUEST, REPLY_REFUSED_FRAME = 9, 12, 13, 14
# Request fields.
REQ_ID, REQ_OP, REQ_KEY, REQ_VALUE, REQ_PREFIX, REQ_LIMIT, REQ_EXPECT_REVISION = (
    1, 2, 3, 4, 5, 6, 7)
REQ_START_REVISION, REQ_WATCH_ID, REQ_TIMEOUT_MS, REQ_LEASE, REQ_TTL = 11, 12, 19, 20, 21
# Response fields.
RESP_ID, RESP_CODE, RESP_MESSAGE, RESP_LEADER_ID, RESP_LEADER_NAME, RESP_LEADER_CLIENT_ADDR = (
    1, 2, 3, 4, 5, 6)
RESP_REVISION, RESP_KVS, RESP_MORE, RESP_COUNT, RESP_FOUND = 7, 8, 9, 10, 11
RESP_WATCH_ID, RESP_EVENTS, RESP_COMPACT_REVISION, RESP_DONE = 14, 15, 16, 18
RESP_LEASE, RESP_TTL = 21, 22

# Status codes (kvc::Code).
CODE_OK, CODE_NOT_LEADER, CODE_UNAVAILABLE, CODE_SHUTTING_DOWN, CODE_TIMEOUT = 0, 7, 6, 9, 8


def encode_frame(kind, body):
    payload = _msgpack.pack([kind, body])
    return struct.pack(">I", len(payload)) + payload


def encode_hello(cluster_id, name, software, token=b""):
    """A client's hello frame, byte for byte as the C++ client writes it (wire::append_hello):
    the body a map32 of the fields in id order, those at their default left out, the token as
    msgpack bin (it is bytes to the member, which compares its SHA-256)."""
    fields = [(HELLO_VERSION, PROTOCOL_VERSION), (HELLO_ROLE, ROLE_CLIENT),
              (HELLO_CLUSTER_ID, cluster_id), (HELLO_NAME, name), (HELLO_SOFTWARE, software),
              (HELLO_TOKEN, bytes(token))]
    fields = [(k, v) for k, v in fields if v]
    body = bytearray(b"\x92" + _msgpack.pack(K_HELLO) + struct.pack(">BI", 0xDF, len(fields)))
    for k, v in fields:
        body += _msgpack.pack(k) + _msgpack.pack(v)
    return struct.pack(">I", len(body)) + bytes(body)



# What an OpenSSL reason seen in a failed handshake most likely means, as kvc-ctl says it.
_TLS_HINTS = (
    ("CERTIFICATE_REQUIRED", ": the server requires a client certificate: give cert= and key="),
    ("WRONG_VERSION_NUMBER", ": the server does not speak TLS (it answered in plaintext): is it a "
                             "member without TLS, or another port?"),
    ("UNKNOWN_CA", ": the server does not trust the CA that signed our certificate (cert=)"),
)


class BrokenConnection(Exception):
    """The connection closed or failed after the handshake (whatever was sent may be applied)."""


class Connection:
    """One handshaken connection to the member at `addr` ("HOST:PORT")."""

    def __init__(self, addr, cluster_id, timeout, client_name, software, tls=None, token=b""):
        self.addr = addr
        self.sock = None
        self._buf = bytearray()
        host, port = split_address(addr)
        deadline = time.monotonic() + timeout
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as e:
            raise Unavailable("cannot connect to %s: %s" % (addr, e.strerror or e)) from None
        if tls is not None:
            # The member's certificate must name the host dialled, as kvc-ctl --cacert checks.
            try:
                self.sock = tls.wrap_socket(self.sock, server_hostname=host)
            except ssl.SSLCertVerificationError as e:
                self.close()
                raise FailedPrecondition("%s: tls handshake failed: certificate verify failed (%s)"
                                         % (addr, e.verify_message)) from None
            except ssl.SSLError as e:
                self.close()
                hint = next((h for k, h in _TLS_HINTS if k in str(e)), "")
                raise FailedPrecondition("%s: tls handshake failed: %s%s"
                                         % (addr, e.reason or e, hint)) from None
            except OSError as e:
                self.close()
                raise Unavailable("%s: tls: the server closed the connection during the TLS "
                                  "handshake: does this port speak TLS, and does it accept our "
                                  "credentials? (%s)" % (addr, e)) from None
        try:
            self._handshake(cluster_id, deadline, client_name, software, token)
        except BaseException:
            self.close()
            raise

    def _handshake(self, cluster_id, deadline, client_name, software, token):
        try:
            self.sock.sendall(encode_hello(cluster_id, client_name, software, token))
            kind, reply = self.read_frame(deadline)
        except (BrokenConnection, socket.timeout, OSError) as e:
            if self._buf[:2] == b"\x15\x03":  # a TLS alert: the member speaks TLS
                raise FailedPrecondition(
                    "%s: tls: the server speaks TLS and this side sent plaintext: give cacert= "
                    "(with cert= and key= if it requires client certificates)" % self.addr) from None
            raise Unavailable("%s: no answer to the hello (%s)" % (self.addr, e)) from None
        if kind != K_HELLO_REPLY or not isinstance(reply, dict):
            raise Unavailable("%s is not a kvc member's client port (answered a frame of kind %s)"
                              % (self.addr, kind))
        code = reply.get(REPLY_CODE, 0)
        if code != CODE_OK:
            # The C++ client's words: an unknown token reads "... refused the connection:
            # unknown token: ..." from every client.
            raise error_for(code, "%s refused the connection: %s"
                            % (self.addr, reply.get(REPLY_MESSAGE, "")))
        self.cluster_id = reply.get(REPLY_CLUSTER_ID, 0)
        self.name = reply.get(REPLY_NAME, "")
        self.client_addr = reply.get(REPLY_CLIENT_ADDR, "")
        self.max_frame_bytes = reply.get(REPLY_MAX_FRAME, 0)
        self.max_request_bytes = reply.get(REPLY_MAX_REQUEST, 0)
        if cluster_id and self.cluster_id != cluster_id:
            raise FailedPrecondition("%s belongs to cluster %x, not %x" %
                                     (self.addr, self.cluster_id, cluster_id))

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def alive(self):
        """False when the member closed the connection (seen without blocking), so a request
        is never sent on a connection already known to be dead."""
        if self.sock is None:
            return False
        if self._buf:
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return True
            data = self.sock.recv(65536)
        except OSError:
            return False
        if not data:
            return False
        self._buf += data  # an unsolicited frame (e.g. a refusal of an oversized frame)
        return True

    def send(self, data, timeout=None):
        """Raises OSError (socket.timeout after `timeout` seconds); the frame is then incomplete
        on the wire, so it was not applied."""
        self.sock.settimeout(timeout)
        self.sock.sendall(data)

    def read_frame(self, deadline):
        """The next frame as (kind, body). Raises socket.timeout at `deadline` (None: wait),
        BrokenConnection when the connection ends or carries garbage."""
        while True:
            if len(self._buf) >= 4:
                n = struct.unpack_from(">I", self._buf)[0]
                if n == 0 or n > MAX_FRAME_BYTES:
                    raise BrokenConnection("%s sent a frame of %d bytes" % (self.addr, n))
                if len(self._buf) >= 4 + n:
                    payload = bytes(self._buf[4:4 + n])
                    del self._buf[:4 + n]
                    try:
                        frame = _msgpack.unpack(payload)
                    except _msgpack.DecodeError as e:
                        raise BrokenConnection("%s sent malformed msgpack: %s"
                                               % (self.addr, e)) from None
                    if not isinstance(frame, list) or len(frame) != 2:
                        raise BrokenConnection("%s sent a frame that is not [kind, body]"
                                               % self.addr)
                    return frame[0], frame[1]
            if deadline is None:
                self.sock.settimeout(None)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("timed out")
                self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                raise
            except OSError as e:
                raise BrokenConnection("%s: %s" % (self.addr, e.strerror or e)) from None
            if not data:
                raise BrokenConnection("%s closed the connection" % self.addr)
            self._buf += data


def split_address(addr):
    """HOST:PORT or [IPv6]:PORT -> (host, port)."""
    if addr.startswith("["):
        host, sep, rest = addr[1:].partition("]:")
    else:
        host, sep, rest = addr.rpartition(":")
    if not sep or not host or not rest.isdigit() or not 0 < int(rest) < 65536:
        raise InvalidArgument("bad endpoint %r: expected HOST:PORT" % addr)
    return host, int(rest)


def parse_endpoints(text):
    """Comma-separated HOST:PORT (an "http://HOST:PORT/" is taken as HOST:PORT), as kvc-ctl
    takes --endpoints."""
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = text.split(",")
    out = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        if item.startswith("http://"):
            item = item[len("http://"):].rstrip("/")
        elif "://" in item:
            raise InvalidArgument("endpoint %r: only HOST:PORT or http://HOST:PORT" % item)
        split_address(item)
        out.append(item)
    if not out:
        raise InvalidArgument("no endpoints given")
    return out
