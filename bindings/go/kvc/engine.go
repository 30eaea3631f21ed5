package kvc

/*
#include <stdint.h>
#include <stdlib.h>
#include <kvc/kvc.h>

extern void kvcGoLeaderChange(void* ctx, uint64_t leader_id, int this_member_leads);
static void kvcgo_on_leader(void* ctx, uint64_t leader_id, int this_member_leads) {
  kvcGoLeaderChange(ctx, leader_id, this_member_leads);
}
static void kvcgo_on_leader_change(kvc_engine* engine, uintptr_t handle) {
  kvc_engine_on_leader_change(engine, handle ? kvcgo_on_leader : NULL, (void*)handle);
}
*/
import "C"

import (
	"context"
	"fmt"
	"runtime/cgo"
	"sync"
	"time"
	"unsafe"
)

// Version is the C library's version, "MAJOR.MINOR.PATCH (commit)".
func Version() string { return C.GoString(C.kvc_version()) }

// Options are kvc-node's settings (kvc-node(1)); the empty ones keep kvc-node's defaults.
type Options struct {
	Name                string // this member's name in InitialCluster
	DataDir             string
	ListenPeer          string // HOST:PORT the other members reach this one at
	ListenClient        string // HOST:PORT for clients (port 0: any free port; ClientAddress)
	ListenHTTP          string
	AdvertiseClient     string
	InitialCluster      string // NAME=HOST:PORT,... (the peer addresses)
	InitialClusterState string // "new" or "existing"
	ClusterToken        string
	SecretFile          string
	Tick                time.Duration
	ElectionTimeout     time.Duration
	HeartbeatInterval   time.Duration
	RequestTimeout      time.Duration
	// Extra sets any other setting by its kvc-node flag name without the dashes.
	Extra map[string]string
}

func (o Options) settings() [][2]string {
	var s [][2]string
	add := func(name, value string) {
		if value != "" {
			s = append(s, [2]string{name, value})
		}
	}
	dur := func(name string, d time.Duration) {
		if d > 0 {
			add(name, fmt.Sprintf("%dms", (d+time.Millisecond-1)/time.Millisecond))
		}
	}
	add("name", o.Name)
	add("data-dir", o.DataDir)
	add("listen-peer", o.ListenPeer)
	add("listen-client", o.ListenClient)
	add("listen-http", o.ListenHTTP)
	add("advertise-client", o.AdvertiseClient)
	add("initial-cluster", o.InitialCluster)
	add("initial-cluster-state", o.InitialClusterState)
	add("cluster-token", o.ClusterToken)
	add("secret-file", o.SecretFile)
	dur("tick", o.Tick)
	dur("election-timeout", o.ElectionTimeout)
	dur("heartbeat-interval", o.HeartbeatInterval)
	dur("request-timeout", o.RequestTimeout)
	for name, value := range o.Extra {
		s = append(s, [2]string{name, value})
	}
	return s
}

// LeaderEvent is a change of leader as this member sees it: LeaderID 0 when none is known.
type LeaderEvent struct {
	LeaderID uint64
	Leads    bool // this member is the leader
}

// Engine is a member of a kvc cluster running inside this process (kvc.h's kvc_engine). Its
// KV calls are those of KV. Safe for use by several goroutines.
type Engine struct {
	db
	e      *C.kvc_engine
	name   string
	handle cgo.Handle

	lmu     sync.Mutex
	lqueue  []LeaderEvent
	lwake   chan struct{}
	leader  chan LeaderEvent
	quit    chan struct{}
	lclosed chan struct{}
	once    sync.Once
}

var _ KV = (*Engine)(nil)

// Open opens the data directory, recovers, binds the listeners and starts the member; it
// returns once the member runs, maybe before it knows a leader (IsReady, WaitReady).
func Open(opts Options) (*Engine, error) {
	o := C.kvc_engine_options_new()
	if o == nil {
		return nil, usageError("Open", "out of memory")
	}
	defer C.kvc_engine_options_free(o)
	for _, s := range opts.settings() {
		name, value := C.CString(s[0]), C.CString(s[1])
		var cerr *C.kvc_error
		code := C.kvc_engine_options_set(o, name, value, &cerr)
		C.free(unsafe.Pointer(name))
		C.free(unsafe.Pointer(value))
		if err := toError("Open", code, cerr); err != nil {
			return nil, err
		}
	}
	var h *C.kvc_engine
	var cerr *C.kvc_error
	if err := toError("Open", C.kvc_engine_open(o, &h, &cerr), cerr); err != nil {
		return nil, err
	}
	e := &Engine{e: h, name: opts.Name, lwake: make(chan struct{}, 1),
		leader: make(chan LeaderEvent), quit: make(chan struct{}), lclosed: make(chan struct{})}
	e.db.init(C.kvc_engine_db(h))
	e.handle = cgo.NewHandle(e)
	go e.forwardLeader()
	C.kvcgo_on_leader_change(h, C.uintptr_t(e.handle))
	return e, nil
}

// Close stops the member (flushing its state), ends its watches and frees it. The calls in
// progress finish first. Later calls fail with ErrUsage. Close may be called more than once.
func (e *Engine) Close() error {
	var err error
	e.once.Do(func() {
		err = e.db.close(func() error {
			var cerr *C.kvc_error
			return toError("Close", C.kvc_engine_close(e.e, &cerr), cerr)
		})
		// kvc_engine_close returned: the leader callback does not run any more.
		e.handle.Delete()
		close(e.quit)
		<-e.lclosed
	})
	return err
}

// ID is this member's id in the cluster.
func (e *Engine) ID() uint64 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return 0
	}
	return uint64(C.kvc_engine_id(e.e))
}

// Name is this member's name (Options.Name).
func (e *Engine) Name() string { return e.name }

// Leader is the leader as this member knows it: its id and name (0, "": none known).
func (e *Engine) Leader() (uint64, string) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return 0, ""
	}
	var buf [256]C.char
	id := C.kvc_engine_leader(e.e, &buf[0], C.size_t(len(buf)))
	return uint64(id), C.GoString(&buf[0])
}

// IsReady says whether the member knows a leader and has applied what was committed when it
// learned of it.
func (e *Engine) IsReady() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return !e.closed && C.kvc_engine_is_ready(e.e) != 0
}

// WaitReady waits until IsReady or the context ends (then the context's error).
func (e *Engine) WaitReady(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !e.IsReady() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.quit:
			return usageError("WaitReady", "the engine is closed")
		case <-t.C:
		}
	}
	return nil
}

// ClientAddress is the address the client listener is bound to (useful with port 0).
func (e *Engine) ClientAddress() string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return ""
	}
	var buf [256]C.char
	C.kvc_engine_client_address(e.e, &buf[0], C.size_t(len(buf)))
	return C.GoString(&buf[0])
}

// LeaderChanges delivers every change of leader this member sees, in order, starting with the
// leader known when the engine opened (if any); it closes when the engine closes. Events are
// queued in memory while nobody reads. The channel is the engine's one: share it, do not
// read it from two places that each expect every event.
func (e *Engine) LeaderChanges() <-chan LeaderEvent { return e.leader }

func (e *Engine) pushLeader(ev LeaderEvent) {
	e.lmu.Lock()
	e.lqueue = append(e.lqueue, ev)
	e.lmu.Unlock()
	select {
	case e.lwake <- struct{}{}:
	default:
	}
}

func (e *Engine) forwardLeader() {
	defer close(e.lclosed)
	defer close(e.leader)
	for {
		e.lmu.Lock()
		queue := e.lqueue
		e.lqueue = nil
		e.lmu.Unlock()
		for _, ev := range queue {
			select {
			case e.leader <- ev:
			case <-e.quit:
				return
			}
		}
		if len(queue) > 0 {
			continue
		}
		select {
		case <-e.lwake:
		case <-e.quit:
			return
		}
	}
}

// Client is a client of a kvc cluster over the network (kvc.h's kvc_client). Its KV calls are
// those of KV. Safe for use by several goroutines.
type Client struct {
	db
	c *C.kvc_client
}

var _ KV = (*Client)(nil)

// ClientOptions are Dial's settings (kvc-ctl's flags of the same names; docs/security.md).
type ClientOptions struct {
	SecretFile string        // the cluster's secret file, if it has one
	Timeout    time.Duration // each call's deadline (0: 5 s)
	// TLS with certificates (kvc-ctl --cacert, --cert, --key): CACert verifies the members'
	// certificates (empty: the system's roots); Cert and Key are this client's, for members
	// with --client-cert-auth. Not with SecretFile.
	CACert, Cert, Key string
	// A named token of the members' permissions file (kvc-permissions(5)), sent when the client
	// connects: the identity its requests are checked as. A member that does not know it
	// refuses the connection, so every call fails with ErrUnauthenticated. TokenFile names a
	// file holding it instead (mode 600, read by Dial). Not both.
	Token, TokenFile string
}

func (o ClientOptions) settings(endpoints string) [][2]string {
	s := [][2]string{{"endpoints", endpoints}}
	add := func(name, value string) {
		if value != "" {
			s = append(s, [2]string{name, value})
		}
	}
	add("secret-file", o.SecretFile)
	add("cacert", o.CACert)
	add("cert", o.Cert)
	add("key", o.Key)
	add("token", o.Token)
	add("token-file", o.TokenFile)
	if o.Timeout > 0 {
		add("timeout", fmt.Sprintf("%dms", (o.Timeout+time.Millisecond-1)/time.Millisecond))
	}
	return s
}

// Dial opens a client of the members at endpoints ("HOST:PORT,HOST:PORT", kvc-ctl
// --endpoints). It connects on the first call, so an unreachable member or a refused token
// shows there.
func Dial(endpoints string, opts ClientOptions) (*Client, error) {
	o := C.kvc_client_options_new()
	if o == nil {
		return nil, usageError("Dial", "out of memory")
	}
	defer C.kvc_client_options_free(o) // zeroes the C copy of the token
	for _, s := range opts.settings(endpoints) {
		name, value := C.CString(s[0]), C.CString(s[1])
		var cerr *C.kvc_error
		code := C.kvc_client_options_set(o, name, value, &cerr)
		C.free(unsafe.Pointer(name))
		C.free(unsafe.Pointer(value))
		if err := toError("Dial", code, cerr); err != nil {
			return nil, err
		}
	}
	var h *C.kvc_client
	var cerr *C.kvc_error
	if err := toError("Dial", C.kvc_client_open_with(o, &h, &cerr), cerr); err != nil {
		return nil, err
	}
	c := &Client{c: h}
	c.db.init(C.kvc_client_db(h))
	return c, nil
}

// Close ends the client's watches and frees it; the calls in progress finish first.
func (c *Client) Close() error {
	return c.db.close(func() error {
		C.kvc_client_close(c.c)
		return nil
	})
}
