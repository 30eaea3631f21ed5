"""A pure-Python client for kvc, over its wire protocol (standard library only).

    import kvc
    c = kvc.Client("127.0.0.1:2379,127.0.0.1:2479,127.0.0.1:2579")
    rev = c.put("/config/a", "1")
    c.cas("/config/a", "2", expect_revision=rev)
    print([kv.key for kv in c.list("/config/")])

Keys and values may be given as str (encoded as UTF-8) or bytes; every key and value this
module returns is bytes (kvc keys and values are arbitrary bytes).

Errors are the exceptions of kvc._errors (KvcError and its subclasses, one per status code).
For writes: Timeout means the outcome is unknown; any other error means nothing was applied.

The client finds and follows the leader: a member that is not the leader names it in its
answer and the request goes there. A request that was never sent, or that a member answered
with "not leader" or "unavailable", is retried until the client's timeout; a read whose
connection breaks is retried elsewhere; a write whose connection breaks after it was sent is
never retried (it raises Timeout). A Client is thread-safe (one request at a time); each watch
has its own connection.
"""

import collections
import socket
import ssl
import threading
import time

from . import _wire as w
from ._errors import (AlreadyExists, CompareFailed, Corruption, FailedPrecondition,
                      Internal, InvalidArgument, IOError_, KvcError, NotFound, NotLeader,
                      PermissionDenied, ResourceExhausted, ShuttingDown, Timeout,
                      Unauthenticated, Unavailable, error_for)

__version__ = "0.1.0"
__all__ = ["Client", "Watch", "KeyValue", "Event", "KvcError", "InvalidArgument", "NotFound",
           "AlreadyExists", "CompareFailed", "FailedPrecondition", "Unavailable", "NotLeader",
           "Timeout", "ShuttingDown", "ResourceExhausted", "Corruption", "IOError_", "Internal",
           "PermissionDenied", "Unauthenticated"]

KeyValue = collections.namedtuple(
    "KeyValue", "key value create_revision mod_revision version lease")
KeyValue.__doc__ = "A key and its value (bytes) with its revisions and lease (0: none)."


class Event(collections.namedtuple("Event", "type kv")):
    """A change seen by a watch: type "put" or "delete"; for a delete, kv holds the key and the
    delete's revision only."""

    @property
    def revision(self):
        return self.kv.mod_revision


def _bytes(v, what):
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    raise TypeError("%s must be str or bytes, not %s" % (what, type(v).__name__))


def _kv(item):
    # [key, value, create_revision, mod_revision, version, lease?] (lease absent from older
    # members).
    item = list(item) + [0] * (6 - len(item))
    key, value = item[0], item[1]
    return KeyValue(key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape"),
                    value if isinstance(value, bytes) else value.encode("utf-8",
                                                                        "surrogateescape"),
                    item[2], item[3], item[4], item[5])


def _load_secret_file(path, what="secret file"):
    """A secret or token file's contents, by the C++ library's rules (net::load_secret_file):
    a regular file, mode 600, at most 64 KiB, one trailing newline stripped, not empty."""
    import os
    import stat
    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidArgument("%s %s: %s" % (what, path, e.strerror)) from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidArgument("%s %s: not a regular file" % (what, path))
    if st.st_mode & 0o077:
        raise InvalidArgument("%s %s: accessible by group or others (mode %04o); run "
                              "chmod 600 %s" % (what, path, st.st_mode & 0o7777, path))
    with open(path, "rb") as f:
        secret = f.read((64 << 10) + 1)
    if len(secret) > 64 << 10:
        raise InvalidArgument("%s %s: larger than 65536 bytes" % (what, path))
    if secret.endswith(b"\n"):
        secret = secret[:-1]
        if secret.endswith(b"\r"):
            secret = secret[:-1]
    if not secret:
        raise InvalidArgument("%s %s: empty" % (what, path))
    return secret


class Client:
    """A client of a kvc cluster.

    endpoints: "HOST:PORT,HOST:PORT,..." (or a list) of members' client addresses.
    cacert, cert, key: TLS with certificates (kvc-ctl --cacert, --cert, --key): the CA file
    that signs the members' certificates (None: the system's roots), and this client's
    certificate and key for members with --client-cert-auth. timeout: seconds per call.
    secret_file, secret: the cluster's shared secret is a TLS 1.3 external pre-shared key,
    which this client cannot use (Python's ssl module has external PSKs only from 3.13): giving
    one fails with InvalidArgument saying so.
    token, token_file: a named token of the members' permissions file (kvc-permissions(5); str
    or bytes), or a file holding it (mode 600, one trailing newline stripped), as kvc-ctl
    --token: sent in the hello of every connection, it is the identity the members check this
    client's requests against. A member that does not know it refuses the connection
    (Unauthenticated); a request the identity may not make raises PermissionDenied.
    """

    def __init__(self, endpoints, secret_file=None, timeout=5.0, secret=None, name="kvc-python",
                 cacert=None, cert=None, key=None, token=None, token_file=None):
        self.endpoints = w.parse_endpoints(endpoints)
        if token is not None and token_file is not None:
            raise InvalidArgument("give token or token_file, not both")
        self._token = (_load_secret_file(token_file, "token file") if token_file is not None
                       else b"" if token is None else _bytes(token, "token"))
        if secret_file is not None and secret is not None:
            raise InvalidArgument("give secret or secret_file, not both")
        loaded = (_load_secret_file(secret_file) if secret_file is not None
                  else None if secret is None else _bytes(secret, "secret"))
        if loaded is not None:
            raise InvalidArgument(
                "the Python client cannot use a shared secret: kvc uses it as a TLS 1.3 external "
                "pre-shared key, which Python's ssl module supports only from 3.13; give the "
                "members certificates and this client cacert=, cert=, key= (or use kvc-ctl or "
                "the C interface)")
        self._tls = None
        if (cert is None) != (key is None):
            raise InvalidArgument("give cert and key together")
        if cacert is not None or cert is not None:
            try:
                ctx = ssl.create_default_context(cafile=cacert)
                if cert is not None:
                    ctx.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as e:
                raise InvalidArgument("tls: %s" % e) from None
            self._tls = ctx
        self.timeout = float(timeout)
        self._name = name
        self._lock = threading.RLock()
        self._conns = {}  # address -> Connection
        self._leader = ""  # the member believed to lead (client address)
        self._cluster_id = 0
        self._next_id = 0

    # -- connections and routing ----------------------------------------------------------

    def close(self):
        with self._lock:
            for c in self._conns.values():
                c.close()
            self._conns.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def leader(self):
        """The client address of the member believed to lead ("" when unknown)."""
        return self._leader

    def _connect(self, addr, deadline):
        # A member that does not answer its hello in a tenth of the timeout (0.25 s to 1 s) is
        # skipped (nothing was sent to it), as the C++ client does.
        budget = min(max(self.timeout / 10, 0.25), 1.0, max(deadline - time.monotonic(), 0.01))
        conn = w.Connection(addr, self._cluster_id, budget, self._name,
                            __version__, tls=self._tls, token=self._token)
        if not self._cluster_id:
            self._cluster_id = conn.cluster_id
        return conn

    def _connection(self, addr, deadline):
        conn = self._conns.get(addr)
        if conn is not None and conn.alive():
            return conn
        if conn is not None:
            conn.close()
            del self._conns[addr]
        conn = self._connect(addr, deadline)
        self._conns[addr] = conn
        return conn

    def _drop(self, addr):
        conn = self._conns.pop(addr, None)
        if conn is not None:
            conn.close()

    def _candidates(self, tried):
        """Members to try, best first: the leader, then connected members, then the rest."""
        order = []
        if self._leader:
            order.append(self._leader)
        order += [a for a in self.endpoints if a in self._conns]
        order += self.endpoints
        seen = set()
        out = []
        for a in order:
            if a not in seen:
                seen.add(a)
                out.append(a)
        fresh = [a for a in out if a not in tried]
        return fresh or out

    def _call(self, req, timeout=None):
        """Sends `req` (a dict of request fields) and returns the ok response's fields.
        Raises the error of any other answer."""
        with self._lock:
            return self._call_locked(req, self.timeout if timeout is None else timeout)

    def _call_locked(self, req, timeout):
        op = req[w.REQ_OP]
        is_write = op in w.WRITE_OPS
        deadline = time.monotonic() + timeout
        last = None  # the last reason a member could not serve the call
        tried = set()
        backoff = 0.02
        # Bounded by the deadline; each pass either fails fast or waits for an answer.
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unavailable("no member could serve the request within %.1fs%s"
                                  % (timeout, ": " + str(last) if last else ""))
            addr = self._candidates(tried)[0]
            tried.add(addr)
            try:
                conn = self._connection(addr, deadline)
            except (FailedPrecondition, Unauthenticated):
                raise  # refused: another cluster, an unknown token; retrying cannot help
            except KvcError as e:
                last = e
                if self._leader == addr:
                    self._leader = ""
                if len(tried) >= len(set(self.endpoints) | {addr}):
                    tried.clear()
                    time.sleep(min(backoff, max(deadline - time.monotonic(), 0)))
                    backoff = min(backoff * 2, 0.5)
                continue
            if (conn.max_request_bytes and
                    len(req.get(w.REQ_KEY, b"")) + len(req.get(w.REQ_VALUE, b""))
                    > conn.max_request_bytes):
                raise InvalidArgument("key and value of %d bytes exceed the member's limit of "
                                      "%d (kvc-node --max-request-bytes)"
                                      % (len(req.get(w.REQ_KEY, b"")) +
                                         len(req.get(w.REQ_VALUE, b"")),
                                         conn.max_request_bytes))
            self._next_id += 1
            rid = self._next_id
            body = dict(req)
            body[w.REQ_ID] = rid
            body[w.REQ_TIMEOUT_MS] = max(int((deadline - time.monotonic()) * 1000), 1)
            try:
                conn.send(w.encode_frame(w.K_REQUEST, body),
                          max(deadline - time.monotonic(), 0.001))
            except OSError as e:
                # The frame did not get onto the wire whole: the member cannot have applied it.
                last = Unavailable("%s: %s" % (addr, e))
                self._drop(addr)
                continue
            # Reads that go unanswered for a third of the timeout (0.25 s to 2 s) are asked of
            # another member; writes wait for their answer until the deadline.
            wait_until = deadline if is_write else min(
                deadline, time.monotonic() + min(max(timeout / 3, 0.25), 2.0))
            try:
                resp = self._await(conn, rid, wait_until)
            except (w.BrokenConnection, socket.timeout) as e:
                self._drop(addr)
                if self._leader == addr:
                    self._leader = ""
                if is_write:
                    raise Timeout("%s: the connection %s after the request was sent: outcome "
                                  "unknown" % (addr, "timed out" if isinstance(
                                      e, socket.timeout) else "broke (%s)" % e)) from None
                last = Unavailable("%s: %s" % (addr, e or "timed out"))
                continue
            code = resp.get(w.RESP_CODE, 0)
            leader = resp.get(w.RESP_LEADER_CLIENT_ADDR, "")
            if code == w.CODE_OK:
                if leader:
                    self._leader = leader
                return resp
            msg = resp.get(w.RESP_MESSAGE, "")
            if code in (w.CODE_NOT_LEADER, w.CODE_UNAVAILABLE, w.CODE_SHUTTING_DOWN):
                # Not applied: go to the leader the answer names, or wait a little and retry.
                last = error_for(code, "%s: %s" % (addr, msg))
                if code == w.CODE_NOT_LEADER and leader and leader != addr:
                    self._leader = leader
                    tried.discard(leader)
                    continue
                if self._leader == addr:
                    self._leader = ""
                time.sleep(min(backoff, max(deadline - time.monotonic(), 0)))
                backoff = min(backoff * 2, 0.5)
                continue
            raise error_for(code, msg)

    def _await(self, conn, rid, deadline):
        while True:
            kind, body = conn.read_frame(deadline)
            if not isinstance(body, dict):
                raise w.BrokenConnection("%s sent a body that is not a map" % conn.addr)
            if kind == w.K_HELLO_REPLY and body.get(w.REPLY_REFUSED_FRAME):
                raise InvalidArgument(body.get(w.REPLY_MESSAGE, "the member refused a frame"))
            if kind == w.K_RESPONSE and body.get(w.RESP_ID) == rid:
                return body
            # A late answer to an earlier attempt on this connection: not ours.

    # -- key-value calls ------------------------------------------------------------------

    def put(self, key, value, lease=0):
        """Sets key to value (attached to `lease` when not 0). Returns the write's revision."""
        req = {w.REQ_OP: w.OP_PUT, w.REQ_KEY: _bytes(key, "key"),
               w.REQ_VALUE: _bytes(value, "value")}
        if lease:
            req[w.REQ_LEASE] = lease
        return self._call(req).get(w.RESP_REVISION, 0)

    def get(self, key):
        """The key's KeyValue (a linearizable read), or None when it does not exist."""
        r = self._call({w.REQ_OP: w.OP_GET, w.REQ_KEY: _bytes(key, "key")})
        kvs = r.get(w.RESP_KVS) or []
        if not r.get(w.RESP_FOUND) or not kvs:
            return None
        return _kv(kvs[0])

    def delete(self, key, expect_revision=0):
        """Deletes key. Returns whether it existed. With expect_revision, deletes only when the
        key's mod revision is that (else raises CompareFailed)."""
        req = {w.REQ_OP: w.OP_DELETE, w.REQ_KEY: _bytes(key, "key")}
        if expect_revision:
            req[w.REQ_EXPECT_REVISION] = expect_revision
        return bool(self._call(req).get(w.RESP_FOUND))

    def cas(self, key, value, expect_revision):
        """Sets key to value when its mod revision is expect_revision (0: when it does not
        exist). Returns the write's revision; raises CompareFailed otherwise."""
        req = {w.REQ_OP: w.OP_CAS, w.REQ_KEY: _bytes(key, "key"),
               w.REQ_VALUE: _bytes(value, "value")}
        if expect_revision:
            req[w.REQ_EXPECT_REVISION] = expect_revision
        return self._call(req).get(w.RESP_REVISION, 0)

    def list(self, prefix, limit=0):
        """The keys that start with prefix, in order, as KeyValues (at most `limit`; 0: all).
        Fetched in pages (the member bounds each answer); each page is a linearizable read, so
        a long listing is not one snapshot."""
        prefix = _bytes(prefix, "prefix")
        out = []
        start = prefix
        for _ in range(1 << 30):  # ends when a page says there is no more
            req = {w.REQ_OP: w.OP_RANGE, w.REQ_KEY: start, w.REQ_VALUE: prefix,
                   w.REQ_PREFIX: True}
            if limit:
                req[w.REQ_LIMIT] = limit - len(out)
            r = self._call(req)
            kvs = [_kv(k) for k in r.get(w.RESP_KVS) or []]
            out += kvs
            if not r.get(w.RESP_MORE) or not kvs or (limit and len(out) >= limit):
                break
            start = kvs[-1].key + b"\0"
        return out

    # -- leases ---------------------------------------------------------------------------

    def lease_grant(self, ttl, lease_id=0):
        """Grants a lease of ttl seconds (lease_id 0: the leader picks the id). Returns its id."""
        req = {w.REQ_OP: w.OP_LEASE_GRANT, w.REQ_TTL: int(ttl)}
        if lease_id:
            req[w.REQ_LEASE] = lease_id
        return self._call(req).get(w.RESP_LEASE, 0)

    def keep_alive(self, lease_id):
        """Restarts the lease's countdown; returns its ttl in seconds (NotFound: expired)."""
        return self._call({w.REQ_OP: w.OP_LEASE_KEEP_ALIVE, w.REQ_LEASE: lease_id}).get(
            w.RESP_TTL, 0)

    def revoke(self, lease_id):
        """Revokes the lease, deleting its keys; returns how many keys were deleted."""
        return self._call({w.REQ_OP: w.OP_LEASE_REVOKE, w.REQ_LEASE: lease_id}).get(
            w.RESP_COUNT, 0)

    # -- watches --------------------------------------------------------------------------

    def watch(self, key, prefix=False, start_revision=0):
        """Watches key (every key under it with prefix=True) from start_revision (0: from now).
        Returns a Watch: iterate it for Events, use it as a context manager (leaving cancels
        it), or call next_event(timeout)."""
        return Watch(self, _bytes(key, "key"), prefix, start_revision)


class Watch:
    """A watch on its own connection. Iterating yields Events in revision order and blocks for
    the next one; the iteration ends when the watch is cancelled.

    When its member fails (the connection breaks, or it answers unavailable or shutting down),
    the watch resumes on another member from where it was, within the client's timeout, with
    no event lost or repeated; only when no member takes it does it raise Unavailable. A member
    that ends the watch with another error raises it (e.g. the history from start_revision was
    compacted: the exception's compact_revision is the oldest revision still kept)."""

    def __init__(self, client, key, prefix, start_revision):
        self._client = client
        self._key = key
        self._prefix = prefix
        self._events = collections.deque()
        self._done = False
        self._conn = None
        self._member = 0  # index in client.endpoints of the member serving the watch
        self.last_revision = 0  # of the last event taken
        # Where a resumed watch starts: the revision of the last event received, skipping the
        # events of that revision already received (a revision with many events may arrive
        # split over several responses), or the start the watch had.
        self._resume_revision = start_revision
        self._received_at_resume = 0
        self._open(time.monotonic() + client.timeout, None)

    def _open(self, deadline, why):
        """Starts the watch at self._resume_revision on the first member that takes it."""
        client = self._client
        n = len(client.endpoints)
        last = why
        # Any member serves a watch: each in turn (the one that failed last), until the deadline.
        for attempt in range(1, 10000):
            if time.monotonic() >= deadline:
                break
            self._member = (self._member + (1 if last is not None else 0)) % n
            addr = client.endpoints[self._member]
            try:
                conn = client._connect(addr, deadline)
            except (FailedPrecondition, Unauthenticated):
                raise
            except KvcError as e:
                last = e
                if attempt % n == 0:
                    time.sleep(0.1)
                continue
            req = {w.REQ_ID: 1, w.REQ_OP: w.OP_WATCH, w.REQ_KEY: self._key}
            if self._prefix:
                req[w.REQ_PREFIX] = True
            if self._resume_revision:
                req[w.REQ_START_REVISION] = self._resume_revision
            try:
                conn.send(w.encode_frame(w.K_REQUEST, req),
                          max(deadline - time.monotonic(), 0.001))
                ack = self._read(conn, deadline)
            except (OSError, w.BrokenConnection, socket.timeout) as e:
                conn.close()
                last = e
                continue
            code = ack.get(w.RESP_CODE, 0)
            if code != w.CODE_OK:
                conn.close()
                if code in (w.CODE_UNAVAILABLE, w.CODE_SHUTTING_DOWN, w.CODE_NOT_LEADER):
                    last = ack.get(w.RESP_MESSAGE, "")
                    time.sleep(0.05)
                    continue
                err = error_for(code, ack.get(w.RESP_MESSAGE, ""))
                err.compact_revision = ack.get(w.RESP_COMPACT_REVISION, 0)
                raise err
            if not self._resume_revision:
                # From now: nothing after the member's revision at the ack was missed.
                self._resume_revision = ack.get(w.RESP_REVISION, 0) + 1
                self._received_at_resume = 0
            self._skip = self._received_at_resume
            self._conn = conn
            self._take(ack)
            return
        raise Unavailable("no member took the watch: %s" % last)

    @staticmethod
    def _read(conn, deadline):
        while True:
            kind, body = conn.read_frame(deadline)
            if kind == w.K_RESPONSE and isinstance(body, dict) and body.get(w.RESP_ID) == 1:
                return body

    def _take(self, r):
        for ev in r.get(w.RESP_EVENTS) or []:
            kv = _kv(ev[1])
            if kv.mod_revision == self._resume_revision and self._skip > 0:
                self._skip -= 1  # received before the watch resumed
                continue
            if kv.mod_revision != self._resume_revision:
                self._resume_revision = kv.mod_revision
                self._received_at_resume = 0
            self._received_at_resume += 1
            self._events.append(Event("put" if ev[0] == 1 else "delete", kv))
        if r.get(w.RESP_DONE):
            self._done = True

    def _resume(self, why):
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._open(time.monotonic() + self._client.timeout, why)

    def next_event(self, timeout=None):
        """The next Event; None when none arrives within `timeout` seconds (None: wait) or
        the watch is cancelled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._events:
            if self._done or self._conn is None:
                return None
            try:
                r = self._read(self._conn, deadline)
            except socket.timeout:
                return None
            except w.BrokenConnection as e:
                self._resume(e)
                continue
            code = r.get(w.RESP_CODE, 0)
            if code in (w.CODE_UNAVAILABLE, w.CODE_SHUTTING_DOWN):
                self._resume(r.get(w.RESP_MESSAGE, ""))
                continue
            if code != w.CODE_OK:
                self._done = True
                self._conn.close()
                self._conn = None
                raise error_for(code, r.get(w.RESP_MESSAGE, ""))
            self._take(r)
        ev = self._events.popleft()
        self.last_revision = ev.revision
        return ev

    def __iter__(self):
        return self

    def __next__(self):
        ev = self.next_event()
        if ev is None:
            raise StopIteration
        return ev

    def cancel(self):
        """Stops the watch (the member answers with a final "done") and closes its connection.
        Events already received and not yet taken are dropped."""
        conn, self._conn = self._conn, None
        self._done = True
        self._events.clear()
        if conn is None:
            return
        try:
            conn.send(w.encode_frame(w.K_REQUEST, {w.REQ_ID: 2, w.REQ_OP: w.OP_WATCH_CANCEL,
                                                   w.REQ_WATCH_ID: 1}), 1.0)
            deadline = time.monotonic() + 1.0
            while not self._read(conn, deadline).get(w.RESP_DONE):
                pass
        except (OSError, w.BrokenConnection, socket.timeout):
            pass  # closing the connection drops the watch anyway
        finally:
            conn.close()

    close = cancel

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cancel()

