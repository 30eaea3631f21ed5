package kvc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// openSingle opens a one-member cluster in this process, ready; extra: more kvc-node settings.
func openSingle(t *testing.T, extra ...string) *Engine {
	t.Helper()
	peer := freePort(t)
	more := map[string]string{}
	for i := 0; i+1 < len(extra); i += 2 {
		more[extra[i]] = extra[i+1]
	}
	e, err := Open(Options{Name: "a", DataDir: filepath.Join(t.TempDir(), "a"), ListenPeer: peer,
		ListenClient: "127.0.0.1:0", InitialCluster: "a=" + peer, Tick: 10 * time.Millisecond,
		ElectionTimeout: 200 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond,
		Extra: more})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestOptionErrors(t *testing.T) {
	_, err := Open(Options{Extra: map[string]string{"no-such-option": "1"}})
	if !errors.Is(err, ErrUsage) {
		t.Fatalf("unknown option: %v", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Message == "" {
		t.Fatalf("no message: %#v", err)
	}
	if _, err := Open(Options{}); !errors.Is(err, ErrFailed) {
		t.Fatalf("no name, no data dir: %v", err)
	}
	if _, err := Dial("not an endpoint list", ClientOptions{}); !errors.Is(err, ErrUsage) {
		t.Fatalf("bad endpoints: %v", err)
	}
}

// exercise runs the KV calls every KV answers alike.
func exercise(t *testing.T, kv KV, p string) {
	ctx := context.Background()
	rev, err := kv.Set(ctx, p+"/a", []byte("one"))
	if err != nil || rev == 0 {
		t.Fatalf("Set: %d %v", rev, err)
	}
	got, err := kv.Get(ctx, p+"/a")
	if err != nil || string(got.Value) != "one" || got.ModRevision != rev || got.Version != 1 {
		t.Fatalf("Get: %+v %v", got, err)
	}
	if _, err := kv.Get(ctx, p+"/b", Serializable()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing: %v", err)
	}
	if ok, err := kv.Exists(ctx, p+"/b"); ok || err != nil {
		t.Fatalf("Exists missing: %v %v", ok, err)
	}
	if ok, err := kv.Exists(ctx, p+"/a"); !ok || err != nil {
		t.Fatalf("Exists: %v %v", ok, err)
	}
	if _, err := kv.CAS(ctx, p+"/a", []byte("x"), rev+1000); !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("CAS stale: %v", err)
	}
	rev2, err := kv.CAS(ctx, p+"/a", []byte("two"), rev)
	if err != nil || rev2 <= rev {
		t.Fatalf("CAS: %d %v", rev2, err)
	}
	if _, err := kv.CAS(ctx, p+"/b", []byte("b"), 0); err != nil {
		t.Fatalf("CAS create: %v", err)
	}
	if err := kv.Delete(ctx, p+"/a", ExpectRevision(rev)); !errors.Is(err, ErrCompareFailed) {
		t.Fatalf("compare-and-delete: %v", err)
	}
	// NUL bytes in keys and values.
	bin := p + "/k\x00z"
	if _, err := kv.Set(ctx, bin, []byte{0, 1, 0}); err != nil {
		t.Fatal(err)
	}
	got, err = kv.Get(ctx, bin)
	if err != nil || got.Key != bin || string(got.Value) != "\x00\x01\x00" {
		t.Fatalf("binary: %q %v", got.Key, err)
	}
	page, err := kv.ListPage(ctx, p+"/", "", 2)
	if err != nil || len(page.KVs) != 2 || !page.More || page.KVs[0].Key != p+"/a" {
		t.Fatalf("ListPage: %+v %v", page, err)
	}
	all, err := kv.List(ctx, p+"/")
	if err != nil || len(all) != 3 || all[2].Key != bin {
		t.Fatalf("List: %+v %v", all, err)
	}
	// Leases.
	lease, err := kv.LeaseGrant(ctx, 30*time.Second)
	if err != nil || lease == 0 {
		t.Fatalf("LeaseGrant: %v", err)
	}
	if _, err := kv.Set(ctx, p+"/eph", []byte("x"), WithLease(lease)); err != nil {
		t.Fatal(err)
	}
	if got, err := kv.Get(ctx, p+"/eph"); err != nil || got.Lease != lease {
		t.Fatalf("leased key: %+v %v", got, err)
	}
	if err := kv.LeaseKeepAlive(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if err := kv.LeaseRevoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, p+"/eph"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoked lease's key: %v", err)
	}
	if err := kv.LeaseKeepAlive(ctx, lease); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoked lease: %v", err)
	}
	// A watch from a revision: history, then live.
	w, err := kv.Watch(ctx, p+"/", WithPrefix(), FromRevision(rev))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"put a one", "put a two", "put b b", "put k\x00z \x00\x01\x00", "put eph x",
		"delete eph "}
	if err := kv.Delete(ctx, p+"/b"); err != nil {
		t.Fatal(err)
	}
	want = append(want, "delete b ")
	rev3, err := kv.Set(ctx, p+"/a", []byte("three"))
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, "put a three")
	timeout := time.After(10 * time.Second)
	for i, wanted := range want {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("watch ended: %v", w.Err())
			}
			kind := map[EventType]string{EventPut: "put", EventDelete: "delete"}[ev.Type]
			got := fmt.Sprintf("%s %s %s", kind, ev.KV.Key[len(p)+1:], ev.KV.Value)
			if got != wanted {
				t.Fatalf("event %d: %q, want %q", i, got, wanted)
			}
			if i == len(want)-1 && ev.KV.ModRevision != rev3 {
				t.Fatalf("last event's revision %d, want %d", ev.KV.ModRevision, rev3)
			}
		case <-timeout:
			t.Fatalf("event %d (%q) did not come", i, wanted)
		}
	}
	w.Close()
	w.Close()
	if _, ok := <-w.Events(); ok {
		t.Fatal("an event after Close")
	}
	if err := kv.Delete(ctx, p+"/b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete missing: %v", err)
	}
	// Contexts: one that ended fails the call before it starts.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := kv.Get(cctx, p+"/a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
}

func TestEngineAndClient(t *testing.T) {
	e := openSingle(t)
	if e.ID() == 0 || e.Name() != "a" {
		t.Fatalf("id %d name %q", e.ID(), e.Name())
	}
	if id, name := e.Leader(); id != e.ID() || name != "a" {
		t.Fatalf("leader %d %q", id, name)
	}
	select {
	case ev := <-e.LeaderChanges():
		if ev.LeaderID != e.ID() || !ev.Leads {
			t.Fatalf("leader event %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no leader event")
	}
	exercise(t, e, "/embedded")

	c, err := Dial(e.ClientAddress(), ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, c, "/remote")
	got, err := e.Get(context.Background(), "/remote/a")
	if err != nil || string(got.Value) != "three" {
		t.Fatalf("what the client wrote: %+v %v", got, err)
	}
	// A watch left open ends with the close, its channel closed.
	w, err := c.Watch(context.Background(), "/x")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-w.Events(); ok || !errors.Is(w.Err(), ErrUnavailable) {
		t.Fatalf("watch after the client's close: %v", w.Err())
	}
	w.Close()
	if _, err := c.Get(context.Background(), "/x"); !errors.Is(err, ErrUsage) {
		t.Fatalf("call after Close: %v", err)
	}
	w2, err := e.Watch(context.Background(), "/y")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-w2.Events(); ok {
		t.Fatal("watch open after the engine's close")
	}
	if _, ok := <-e.LeaderChanges(); ok {
		t.Fatal("leader channel open after close")
	}
	if e.IsReady() || e.ID() != 0 {
		t.Fatal("closed engine ready")
	}
}

// A context that ends while a C call blocks abandons it: the call returns at once with an error
// matching both ErrTimeout (outcome unknown) and the context's error. The client's endpoint
// accepts connections and never answers, so its calls block until the client's own timeout.
func TestContextEndsDuringCall(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	c, err := Dial(l.Addr().String(), ClientOptions{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Set(ctx, "/k", []byte("v"))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Set: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the call returned after %v, not when its context ended", d)
	}
	// A watch abandoned the same way is stopped once its C call returns.
	wctx, wcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer wcancel()
	if _, err := c.Watch(wctx, "/k"); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Watch: %v", err)
	}
	// Without a context deadline the client's own timeout bounds the call: outcome unknown
	// or, when the request was never sent, unavailable.
	_, err = c.Get(context.Background(), "/k")
	if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get: %v", err)
	}
	// Close waits for the abandoned call, then later calls are usage errors.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), "/k"); !errors.Is(err, ErrUsage) {
		t.Fatalf("after Close: %v", err)
	}
}

// Tokens (kvc-permissions(5)): a member whose permissions file grants token `ctl` readwrite on
// /app/. A client with the token (Token or TokenFile) is `ctl`: it writes there and is refused
// elsewhere, the refusal naming it; without a token it is `anonymous`; an unknown token is
// refused when the client connects, never taken as anonymous.
func TestTokens(t *testing.T) {
	const token = "go-test-token-8c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"
	dir := t.TempDir()
	digest := sha256.Sum256([]byte(token)) // what `kvc-ctl auth hash-token ctl` prints
	perms := filepath.Join(dir, "permissions")
	file := "token ctl " + hex.EncodeToString(digest[:]) + "\ngrant ctl readwrite /app/\n"
	if err := os.WriteFile(perms, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "ctl.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := openSingle(t, "permissions-file", perms)
	ctx := context.Background()
	dial := func(opts ClientOptions) *Client {
		t.Helper()
		opts.Timeout = 2 * time.Second
		c, err := Dial(e.ClientAddress(), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	refused := func(err error, sentinel error, status, text string) {
		t.Helper()
		var ke *Error
		if !errors.Is(err, sentinel) || !errors.Is(err, ErrFailed) || !errors.As(err, &ke) ||
			ke.Status != status || !strings.Contains(ke.Message, text) {
			t.Fatalf("got %v, want %v (%s) with %q", err, sentinel, status, text)
		}
	}
	for _, opts := range []ClientOptions{{Token: token}, {TokenFile: tokenFile}} {
		c := dial(opts)
		rev, err := c.Set(ctx, "/app/k", []byte("v"))
		if err != nil || rev == 0 {
			t.Fatalf("%+v: Set under the grant: %v", opts, err)
		}
		if got, err := c.Get(ctx, "/app/k"); err != nil || got.ModRevision != rev {
			t.Fatalf("%+v: Get: %+v %v", opts, got, err)
		}
		_, err = c.Set(ctx, "/other", []byte("v"))
		refused(err, ErrPermissionDenied, "permission_denied",
			"permission denied: ctl may not put /other")
	}
	_, err := dial(ClientOptions{}).Set(ctx, "/app/k", []byte("v"))
	refused(err, ErrPermissionDenied, "permission_denied", "permission denied: anonymous may not put")
	_, err = dial(ClientOptions{Token: "not-a-token"}).Get(ctx, "/app/k")
	refused(err, ErrUnauthenticated, "unauthenticated", "refused the connection: unknown token: "+
		"no token in this member's --permissions-file has that value")
	// Dial's own refusals: both kinds of token, a token file others may read, a CA file that
	// does not exist.
	_, err = Dial(e.ClientAddress(), ClientOptions{Token: token, TokenFile: tokenFile})
	if !errors.Is(err, ErrUsage) {
		t.Fatalf("Token and TokenFile: %v", err)
	}
	loose := filepath.Join(dir, "loose.token")
	if err := os.WriteFile(loose, []byte(token), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Dial(e.ClientAddress(), ClientOptions{TokenFile: loose})
	if err == nil || !strings.Contains(err.Error(), "token file "+loose) ||
		!strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a token file others may read: %v", err)
	}
	_, err = Dial(e.ClientAddress(), ClientOptions{CACert: filepath.Join(dir, "no-ca.pem")})
	if err == nil || !strings.Contains(err.Error(), "no-ca.pem") {
		t.Fatalf("a CA file that does not exist: %v", err)
	}
}
