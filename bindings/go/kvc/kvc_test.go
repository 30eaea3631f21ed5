package kvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
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

// openSingle opens a one-member cluster in this process, ready.
func openSingle(t *testing.T) *Engine {
	t.Helper()
	peer := freePort(t)
	e, err := Open(Options{Name: "a", DataDir: filepath.Join(t.TempDir(), "a"), ListenPeer: peer,
		ListenClient: "127.0.0.1:0", InitialCluster: "a=" + peer, Tick: 10 * time.Millisecond,
		ElectionTimeout: 200 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond})
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
