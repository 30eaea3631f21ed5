"""The Python client against real kvc-node processes on 127.0.0.1 (ctest: python.pytest).

KVC_NODE names the kvc-node binary (ctest sets it; default: build/cmd/kvc-node/kvc-node).
Every member is started in a temporary directory on free ports and stopped by its PID.
"""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kvc  # noqa: E402
from kvc import _msgpack  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
KVC_NODE = os.environ.get("KVC_NODE", os.path.join(ROOT, "build", "cmd", "kvc-node", "kvc-node"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """kvc-node members started from one --initial-cluster; stopped by PID."""

    def __init__(self, tmp, size, token, secret_file=None, extra=()):
        if not os.access(KVC_NODE, os.X_OK):
            pytest.fail("no kvc-node binary at %s (set KVC_NODE)" % KVC_NODE)
        self.dir = tmp
        self.names = ["m%d" % (i + 1) for i in range(size)]
        self.peer = {n: "127.0.0.1:%d" % free_port() for n in self.names}
        self.client = {n: "127.0.0.1:%d" % free_port() for n in self.names}
        self.token = token
        self.secret_file = secret_file
        self.extra = list(extra)
        self.procs = {}
        for n in self.names:
            self.start(n)

    def start(self, name):
        args = [KVC_NODE, "--name", name, "--data-dir", os.path.join(self.dir, name),
                "--listen-peer", self.peer[name], "--listen-client", self.client[name],
                "--initial-cluster", ",".join("%s=%s" % (n, self.peer[n]) for n in self.names),
                "--cluster-token", self.token,
                "--log-file", os.path.join(self.dir, name + ".log")]
        if self.secret_file:
            args += ["--secret-file", self.secret_file]
        args += self.extra
        self.procs[name] = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self, name):
        p = self.procs.pop(name, None)
        if p is not None and p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)

    def stop(self):
        for name in list(self.procs):
            self.kill(name)

    def endpoints(self, names=None):
        return ",".join(self.client[n] for n in (names or self.names))

    def wait_ready(self, client, timeout=30.0):
        """Until a write succeeds (a leader is elected and a quorum applies)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.put("/ready", "1")
                return
            except kvc.Unavailable:
                if time.monotonic() > deadline:
                    raise
            for n, p in self.procs.items():
                assert p.poll() is None, "member %s exited with %s" % (n, p.returncode)

    def name_of(self, client_addr):
        return next(n for n in self.names if self.client[n] == client_addr)


@pytest.fixture(scope="module")
def cluster():
    with tempfile.TemporaryDirectory(prefix="kvc-py-") as tmp:
        c = Cluster(tmp, 3, "py-test")
        try:
            with kvc.Client(c.endpoints()) as client:
                c.wait_ready(client)
            yield c
        finally:
            c.stop()


@pytest.fixture
def client(cluster):
    with kvc.Client(cluster.endpoints(), timeout=5.0) as c:
        yield c


def test_msgpack_round_trip():
    values = [None, True, False, 0, 127, 128, 255, 65535, 65536, 2**32, 2**64 - 1, -1, -33,
              -200, -2**63, b"", b"\x00\xff" * 200, "", "x" * 40, "é" * 70000, [], [1, [2]],
              list(range(20)), {1: b"a", 2: "b"}, {i: i for i in range(20)}]
    for v in values:
        assert _msgpack.unpack(_msgpack.pack(v)) == v
    with pytest.raises(_msgpack.DecodeError):
        _msgpack.unpack(_msgpack.pack([1, 2, 3])[:-1])
    with pytest.raises(_msgpack.DecodeError):
        _msgpack.unpack(b"\xdd\xff\xff\xff\xff")  # an array longer than its bytes


def test_five_lines(cluster):
    # The README's example, as a user would type it.
    c = kvc.Client(cluster.endpoints())
    rev = c.put("/five/a", "1")
    assert c.get("/five/a").value == b"1"
    assert c.cas("/five/a", "2", expect_revision=rev) > rev
    assert [kv.key for kv in c.list("/five/")] == [b"/five/a"]
    c.close()


def test_get_missing_is_none(client):
    assert client.get("/no/such/key") is None


def test_binary_keys_and_values(client):
    key = b"/bin/\x00\xff\x80key"
    value = bytes(range(256)) * 4
    rev = client.put(key, value)
    kv = client.get(key)
    assert kv.key == key and kv.value == value
    assert kv.mod_revision == rev and kv.create_revision == rev and kv.version == 1
    assert client.put("/bin/utf8", "ключ") > rev
    assert client.get("/bin/utf8").value == "ключ".encode()
    with pytest.raises(TypeError):
        client.put("/bin/x", 5)


def test_list_pages_and_limit(client):
    n = 2500  # past the member's page size, so list() needs several pages
    for i in range(n):
        client.put("/page/%05d" % i, "v%d" % i)
    client.put("/pagex", "outside the prefix")
    kvs = client.list("/page/")
    assert [kv.key for kv in kvs] == [b"/page/%05d" % i for i in range(n)]
    assert kvs[1234].value == b"v1234"
    assert [kv.key for kv in client.list("/page/", limit=3)] == [b"/page/00000", b"/page/00001",
                                                                  b"/page/00002"]
    assert client.list("/nothing-here/") == []


def test_cas_failure(client):
    rev = client.put("/cas/k", "a")
    with pytest.raises(kvc.CompareFailed) as e:
        client.cas("/cas/k", "b", expect_revision=rev + 1000)
    assert e.value.exit_code == 4 and e.value.message
    assert client.get("/cas/k").value == b"a"
    with pytest.raises(kvc.CompareFailed):
        client.cas("/cas/k", "b", expect_revision=0)  # 0: only when the key does not exist
    assert client.cas("/cas/new", "x", expect_revision=0) > rev


def test_delete_with_expect_revision(client):
    rev = client.put("/del/k", "a")
    with pytest.raises(kvc.CompareFailed):
        client.delete("/del/k", expect_revision=rev + 1)
    assert client.get("/del/k") is not None
    assert client.delete("/del/k", expect_revision=rev) is True
    assert client.get("/del/k") is None
    assert client.delete("/del/k") is False


def test_watch_from_revision_and_live(client):
    r1 = client.put("/watch/a", "1")
    client.put("/watch/b", "2")
    client.delete("/watch/a")
    client.put("/other", "not watched")
    with client.watch("/watch/", prefix=True, start_revision=r1) as wch:
        got = [wch.next_event(timeout=5) for _ in range(3)]
        assert [(e.type, e.kv.key) for e in got] == [("put", b"/watch/a"), ("put", b"/watch/b"),
                                                    ("delete", b"/watch/a")]
        assert got[0].kv.value == b"1" and got[0].revision == r1
        assert got[1].revision < got[2].revision
        live = client.put("/watch/c", "3")  # after the replay: delivered live
        e = wch.next_event(timeout=5)
        assert (e.type, e.kv.key, e.kv.value, e.revision) == ("put", b"/watch/c", b"3", live)
        assert wch.next_event(timeout=0.2) is None
    # A single-key watch from now sees only that key.
    with client.watch("/watch/one") as wch:
        client.put("/watch/two", "x")
        client.put("/watch/one", "y")
        e = wch.next_event(timeout=5)
        assert (e.kv.key, e.kv.value) == (b"/watch/one", b"y")


def test_watch_iterator_ends_on_cancel(client):
    wch = client.watch("/iter/", prefix=True)
    revs = [client.put("/iter/%d" % i, "v") for i in range(3)]
    seen = []
    for e in wch:
        seen.append(e.revision)
        if len(seen) == 3:
            wch.cancel()
    assert seen == revs


def test_leases(client):
    lease = client.lease_grant(30)
    assert lease != 0
    client.put("/lease/k", "v", lease=lease)
    assert client.get("/lease/k").lease == lease
    assert client.keep_alive(lease) >= 30
    assert client.revoke(lease) == 1
    assert client.get("/lease/k") is None
    with pytest.raises(kvc.NotFound):
        client.keep_alive(lease)


def test_write_through_a_follower(cluster, client):
    client.put("/leader/probe", "x")
    leader = client.leader
    assert leader in cluster.client.values()
    follower = next(a for a in cluster.client.values() if a != leader)
    with kvc.Client(follower) as only_follower:
        # The follower answers "not leader" naming the leader; the client goes there.
        rev = only_follower.put("/via/follower", "v")
        assert only_follower.leader == leader
        assert only_follower.get("/via/follower").mod_revision == rev


def test_errors_mirror_exit_codes():
    assert issubclass(kvc.NotLeader, kvc.Unavailable)
    assert (kvc.NotFound("x").exit_code, kvc.CompareFailed("x").exit_code,
            kvc.Unavailable("x").exit_code, kvc.Timeout("x").exit_code) == (3, 4, 5, 6)
    with pytest.raises(kvc.Unavailable):  # nothing listens there
        kvc.Client("127.0.0.1:%d" % free_port(), timeout=0.5).get("k")
    with pytest.raises(kvc.InvalidArgument):
        kvc.Client("no-port")


def write_secret(path, secret):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, secret)
    os.close(fd)


def test_shared_secret_is_refused_clearly():
    # The secret is a TLS 1.3 external pre-shared key, which Python's ssl cannot use before 3.13.
    with tempfile.TemporaryDirectory(prefix="kvc-py-secret-") as tmp:
        right, wrong = os.path.join(tmp, "secret"), os.path.join(tmp, "wrong")
        write_secret(right, b"6f1c8a3e0d5b2f7a9c4e1b8d3a6f0c5e2b7d9a4c1f6e3b8a0d5c2f7e4b9a1d6c\n")
        write_secret(wrong, b"something else\n")
        c = Cluster(tmp, 1, "py-secret", secret_file=right)
        try:
            with pytest.raises(kvc.InvalidArgument, match="cannot use a shared secret"):
                kvc.Client(c.endpoints(), secret_file=right)
            with kvc.Client(c.endpoints(), timeout=2) as none:
                with pytest.raises(kvc.FailedPrecondition) as e:
                    none.get("/s/k")
                assert "speaks TLS" in e.value.message, e.value.message
            with pytest.raises(kvc.InvalidArgument, match="no-such-file"):
                kvc.Client(c.endpoints(), secret_file=os.path.join(tmp, "no-such-file"))
            os.chmod(wrong, 0o644)
            with pytest.raises(kvc.InvalidArgument, match="chmod 600"):
                kvc.Client(c.endpoints(), secret_file=wrong)
        finally:
            c.stop()


def test_hello_is_the_cpp_clients_byte_for_byte():
    # What wire::append_hello (lib/kvc/wire/messages.cc) writes for these hellos, printed by a
    # C++ program linking kvc_wire: a map32 body, fields in id order, the token (11) as bin.
    assert kvc._wire.encode_hello(0x1234abcd5678ef01, "kvc-python", "0.1.0").hex() == (
        "000000289201df000000050101020203cf1234abcd5678ef0105aa6b76632d707974686f6e06a5302e31"
        "2e30")
    assert kvc._wire.encode_hello(0, "kvc-python", "0.1.0", b"py-token-\x01\xff").hex() == (
        "0000002c9201df000000050101020205aa6b76632d707974686f6e06a5302e312e300bc40b70792d746f"
        "6b656e2d01ff")


def test_tokens():
    """A member whose permissions file grants token `ctl` readwrite on /app/: a client with the
    token (token= or token_file=) is `ctl`, writes there and is refused elsewhere; without a
    token it is `anonymous`; an unknown token is refused at the hello, never anonymous."""
    token = "py-test-token-3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c"
    with tempfile.TemporaryDirectory(prefix="kvc-py-token-") as tmp:
        perms = os.path.join(tmp, "permissions")
        with open(perms, "w") as f:  # the line `kvc-ctl auth hash-token ctl` prints
            f.write("token ctl %s\ngrant ctl readwrite /app/\n"
                    % hashlib.sha256(token.encode()).hexdigest())
        token_file = os.path.join(tmp, "ctl.token")
        write_secret(token_file, token.encode() + b"\n")
        c = Cluster(tmp, 1, "py-token", extra=["--permissions-file", perms])
        try:
            for opts in ({"token": token}, {"token": token.encode()}, {"token_file": token_file}):
                with kvc.Client(c.endpoints(), timeout=5, **opts) as ctl:
                    deadline = time.monotonic() + 30
                    while True:  # until the member leads
                        try:
                            rev = ctl.put("/app/k", "v")
                            break
                        except kvc.Unavailable:
                            assert time.monotonic() < deadline
                    assert ctl.get("/app/k").mod_revision == rev
                    with pytest.raises(kvc.PermissionDenied) as e:
                        ctl.put("/other", "v")
                    assert e.value.message == "permission denied: ctl may not put /other"
                    assert e.value.exit_code == 1
            with kvc.Client(c.endpoints(), timeout=5) as anonymous:
                with pytest.raises(kvc.PermissionDenied) as e:
                    anonymous.put("/app/k", "v")
                assert e.value.message == "permission denied: anonymous may not put /app/k"
            with kvc.Client(c.endpoints(), timeout=5, token="not-a-token") as stranger:
                start = time.monotonic()
                with pytest.raises(kvc.Unauthenticated) as e:
                    stranger.get("/app/k")
                assert time.monotonic() - start < 2  # final: not retried until the timeout
                assert e.value.message == (
                    "%s refused the connection: unknown token: no token in this member's "
                    "--permissions-file has that value" % c.endpoints())
            with pytest.raises(kvc.InvalidArgument, match="not both"):
                kvc.Client(c.endpoints(), token=token, token_file=token_file)
            os.chmod(token_file, 0o644)
            with pytest.raises(kvc.InvalidArgument, match="token file .*chmod 600"):
                kvc.Client(c.endpoints(), token_file=token_file)
        finally:
            c.stop()


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def test_certificates(cluster):
    with tempfile.TemporaryDirectory(prefix="kvc-py-tls-") as tmp:
        f = lambda n: os.path.join(tmp, n)  # noqa: E731
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        openssl("req", "-x509", *ec, "-days", "30", "-subj", "/CN=py CA", "-keyout",
                f("ca-key.pem"), "-out", f("ca.pem"))
        ext = f("ext")
        with open(ext, "w") as e:
            e.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
        for n in ("member", "client"):
            openssl("req", *ec, "-subj", "/CN=" + n, "-keyout", f(n + "-key.pem"), "-out",
                    f(n + ".csr"))
            openssl("x509", "-req", "-in", f(n + ".csr"), "-CA", f("ca.pem"), "-CAkey",
                    f("ca-key.pem"), "-CAcreateserial", "-days", "30", "-out", f(n + ".pem"),
                    "-extfile", ext)
        c = Cluster(tmp, 1, "py-tls", extra=[
            "--cert-file", f("member.pem"), "--key-file", f("member-key.pem"),
            "--trusted-ca-file", f("ca.pem"), "--client-cert-auth"])
        try:
            with kvc.Client(c.endpoints(), cacert=f("ca.pem"), cert=f("client.pem"),
                            key=f("client-key.pem")) as good:
                c.wait_ready(good)
                rev = good.put("/t/k", "v")
                assert good.get("/t/k").mod_revision == rev
            with kvc.Client(c.endpoints(), cacert=f("ca.pem"), timeout=2) as no_cert:
                with pytest.raises(kvc.KvcError) as e:
                    no_cert.get("/t/k")
                assert "certificate" in e.value.message, e.value.message
            with kvc.Client(c.endpoints(), timeout=2) as plain:
                with pytest.raises(kvc.FailedPrecondition) as e:
                    plain.get("/t/k")
                assert "speaks TLS" in e.value.message, e.value.message
            # The reverse: TLS at a member without it fails at once, saying so.
            with kvc.Client(cluster.endpoints(), cacert=f("ca.pem"), timeout=10) as tls:
                with pytest.raises(kvc.FailedPrecondition) as e:
                    tls.get("/t/k")
                assert "does not speak TLS" in e.value.message, e.value.message
        finally:
            c.stop()


def test_kill_leader_while_writing():
    """Every acknowledged write survives the leader's death; a Timeout (outcome unknown) is
    allowed, and the writes go on at the new leader."""
    with tempfile.TemporaryDirectory(prefix="kvc-py-kill-") as tmp:
        c = Cluster(tmp, 3, "py-kill")
        try:
            with kvc.Client(c.endpoints(), timeout=5) as writer:
                c.wait_ready(writer)
                acked, unknown = {}, 0
                leader = c.name_of(writer.leader)
                killed = []

                def killer():
                    # Kills the leader from another thread while a write is in flight.
                    deadline = time.monotonic() + 30
                    while len(acked) < 100 and time.monotonic() < deadline:
                        time.sleep(0.001)
                    c.kill(leader)
                    killed.append(leader)

                t = threading.Thread(target=killer)
                t.start()
                stop_at = time.monotonic() + 60  # bounded in time as well as in count
                for i in range(400):
                    if time.monotonic() > stop_at:
                        break
                    key = "/kill/%04d" % i
                    try:
                        acked[key] = writer.put(key, "v%d" % i)
                    except kvc.Timeout:
                        unknown += 1  # outcome unknown: allowed, and not checked below
                    except kvc.Unavailable:
                        pass  # not applied
                t.join(timeout=60)
                print("acked %d, unknown %d, killed %s" % (len(acked), unknown, killed))
                assert killed == [leader]
                assert len(acked) > 150, (len(acked), unknown)
                assert writer.leader and c.name_of(writer.leader) != leader
            survivors = [n for n in c.names if n != leader]
            with kvc.Client(c.endpoints(survivors)) as reader:
                got = {kv.key.decode(): kv.mod_revision for kv in reader.list("/kill/")}
            for key, rev in acked.items():
                assert got.get(key) == rev, key
        finally:
            c.stop()


def test_watch_resumes_when_its_member_dies():
    """A watch whose member is killed goes on at another member: no event lost or repeated."""
    with tempfile.TemporaryDirectory(prefix="kvc-py-watch-") as tmp:
        c = Cluster(tmp, 3, "py-watch")
        try:
            with kvc.Client(c.endpoints(), timeout=5) as writer:
                c.wait_ready(writer)
                # The watch's member: a follower, so the writes go on at the same leader.
                leader = c.name_of(writer.leader)
                order = [n for n in c.names if n != leader] + [leader]
                with kvc.Client(c.endpoints(order), timeout=5) as watcher:
                    wch = watcher.watch("/res/", prefix=True)
                    revs = [writer.put("/res/%03d" % i, "v") for i in range(50)]
                    got = [wch.next_event(timeout=5).revision for _ in range(20)]
                    c.kill(order[0])
                    revs += [writer.put("/res/%03d" % i, "v") for i in range(50, 100)]
                    for _ in range(80):
                        e = wch.next_event(timeout=10)
                        assert e is not None, "watch stalled after %d events" % len(got)
                        got.append(e.revision)
                    assert got == revs
                    assert wch._member != 0  # it moved to another member
                    assert wch.next_event(timeout=0.2) is None
                    wch.cancel()
        finally:
            c.stop()


def test_concurrent_calls_share_a_client(client):
    errors = []

    def worker(t):
        try:
            for i in range(50):
                client.put("/thr/%d/%d" % (t, i), "v")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(client.list("/thr/")) == 200
