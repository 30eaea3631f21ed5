package kvc

/*
#include <stdint.h>
#include <stdlib.h>
#include <kvc/kvc.h>

// The Go side of kvc_watch's callback (callback.go); the handle travels as the callback's ctx.
extern void kvcGoWatchEvent(void* ctx, int type, kvc_kv* kv);
static void kvcgo_on_watch(void* ctx, kvc_event_type type, const kvc_kv* kv) {
  kvcGoWatchEvent(ctx, (int)type, (kvc_kv*)kv);
}
static kvc_code kvcgo_watch(kvc_db* db, const char* key, size_t key_len, int prefix,
                            uint64_t start_revision, uintptr_t handle, uint64_t* watch_id,
                            kvc_error** err) {
  return kvc_watch(db, key, key_len, prefix, start_revision, kvcgo_on_watch, (void*)handle,
                   watch_id, err);
}
static kvc_kv* kvcgo_item(kvc_kv_list* list, size_t i) { return &list->items[i]; }
*/
import "C"

import (
	"context"
	"errors"
	"runtime/cgo"
	"sync"
	"time"
	"unsafe"
)

// KeyValue is a key as the cluster stores it.
type KeyValue struct {
	Key            string
	Value          []byte
	CreateRevision uint64
	ModRevision    uint64
	Version        uint64
	Lease          uint64 // the lease the key is attached to, 0: none
}

// Page is one page of a listing: More says keys remain after the last one.
type Page struct {
	KVs  []KeyValue
	More bool
}

// KV is what an embedded member (Engine) and a client of a cluster (Client) both offer, so a
// program moves between the two without changing its data code.
//
// Every call takes a context. One that has ended already fails the call before it starts
// (with the context's error). The C calls block and cannot be interrupted, so a context that
// ends while one runs abandons it: the call returns an error matching ErrTimeout and the
// context's error, and the C call finishes in the background. Its outcome is then unknown: a
// write may still be applied. Each call also has the deadline of the member's or client's
// request timeout, after which it fails with ErrTimeout by itself.
type KV interface {
	// Get reads a key: ErrNotFound when it does not exist.
	Get(ctx context.Context, key string, opts ...Option) (KeyValue, error)
	// Exists says whether a key exists (a linearizable read unless Serializable()).
	Exists(ctx context.Context, key string, opts ...Option) (bool, error)
	// Set writes a key (attached to a lease with WithLease) and returns the write's revision.
	Set(ctx context.Context, key string, value []byte, opts ...Option) (uint64, error)
	// Delete deletes a key: ErrNotFound when it did not exist; with ExpectRevision, only when
	// that is its mod revision (ErrCompareFailed otherwise).
	Delete(ctx context.Context, key string, opts ...Option) error
	// CAS writes a key only if its mod revision is expectRevision (0: the key must not exist),
	// ErrCompareFailed otherwise; returns the write's revision.
	CAS(ctx context.Context, key string, value []byte, expectRevision uint64) (uint64, error)
	// ListPage lists one page of the keys under prefix after the key `after` ("" from the
	// first), at most limit (0: the member's page size).
	ListPage(ctx context.Context, prefix, after string, limit uint64, opts ...Option) (Page, error)
	// List lists every key under prefix, page after page (not one snapshot: a key written
	// between two pages may be seen or not).
	List(ctx context.Context, prefix string, opts ...Option) ([]KeyValue, error)
	// LeaseGrant grants a lease of the given time to live and returns its id.
	LeaseGrant(ctx context.Context, ttl time.Duration) (uint64, error)
	// LeaseKeepAlive renews a lease: ErrNotFound once it expired or was revoked.
	LeaseKeepAlive(ctx context.Context, id uint64) error
	// LeaseRevoke revokes a lease and deletes the keys attached to it.
	LeaseRevoke(ctx context.Context, id uint64) error
	// Watch delivers the changes of a key (every key under it with WithPrefix) from
	// FromRevision's revision on (default: from now) on the Watcher's channel.
	Watch(ctx context.Context, key string, opts ...Option) (*Watcher, error)
}

// Option adjusts one call; each call reads the options that concern it and ignores the others.
type Option func(*callOptions)

type callOptions struct {
	serializable   bool
	lease          uint64
	expectRevision uint64
	prefix         bool
	startRevision  uint64
}

// Serializable makes a read (Get, Exists, List, ListPage) answer from the member's own state,
// without a quorum round: faster, possibly stale.
func Serializable() Option { return func(o *callOptions) { o.serializable = true } }

// WithLease attaches the key Set writes to a lease.
func WithLease(id uint64) Option { return func(o *callOptions) { o.lease = id } }

// ExpectRevision makes Delete a compare-and-delete.
func ExpectRevision(rev uint64) Option { return func(o *callOptions) { o.expectRevision = rev } }

// WithPrefix makes Watch deliver the changes of every key under the key.
func WithPrefix() Option { return func(o *callOptions) { o.prefix = true } }

// FromRevision makes Watch start at a past revision (its history), not now.
func FromRevision(rev uint64) Option { return func(o *callOptions) { o.startRevision = rev } }

func options(opts []Option) callOptions {
	var o callOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// db is the kvc_db of an Engine or a Client, shared by their KV calls. mu is held (read) for
// the whole of every C call, so that close (write) waits until none runs and no call starts
// on a freed handle.
type db struct {
	mu     sync.RWMutex
	h      *C.kvc_db
	closed bool

	wmu      sync.Mutex // guards watchers
	watchers map[*Watcher]struct{}
}

func (d *db) init(h *C.kvc_db) {
	d.h = h
	d.watchers = make(map[*Watcher]struct{})
}

// close waits for the calls in progress, then runs free (which frees the C handle and ends
// its watches without a callback) and ends the open Watchers.
func (d *db) close(free func() error) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	err := free()
	d.mu.Unlock()
	d.wmu.Lock()
	watchers := d.watchers
	d.watchers = nil
	d.wmu.Unlock()
	for w := range watchers {
		w.finish(ErrUnavailable)
		w.release()
	}
	return err
}

type result[T any] struct {
	v   T
	err error
}

// call runs f, a blocking C call, with d's handle; see KV on contexts.
func call[T any](ctx context.Context, d *db, op string, f func(h *C.kvc_db) (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	run := func() (T, error) {
		d.mu.RLock()
		defer d.mu.RUnlock()
		if d.closed {
			return zero, usageError(op, "the handle is closed")
		}
		return f(d.h)
	}
	if ctx.Done() == nil {
		return run()
	}
	done := make(chan result[T], 1)
	go func() {
		v, err := run()
		done <- result[T]{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return zero, &Error{Code: int(C.KVC_TIMEOUT), Status: "timeout", Op: op, ctxErr: ctx.Err(),
			Message: "the context ended during the call (" + ctx.Err().Error() +
				"): its outcome is unknown"}
	}
}

// cbytes returns a C copy of s (freed by the caller with C.free) and its length; a C string
// argument is read during the call only, but Go memory may not be kept by C, so a copy it is.
func cbytes(s string) (*C.char, C.size_t) {
	if len(s) == 0 {
		return nil, 0
	}
	return (*C.char)(C.CBytes([]byte(s))), C.size_t(len(s))
}

func goKV(kv *C.kvc_kv) KeyValue {
	return KeyValue{
		Key:            C.GoStringN(kv.key, C.int(kv.key_len)),
		Value:          C.GoBytes(unsafe.Pointer(kv.value), C.int(kv.value_len)),
		CreateRevision: uint64(kv.create_revision),
		ModRevision:    uint64(kv.mod_revision),
		Version:        uint64(kv.version),
		Lease:          uint64(kv.lease),
	}
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func (d *db) Get(ctx context.Context, key string, opts ...Option) (KeyValue, error) {
	o := options(opts)
	return call(ctx, d, "Get", func(h *C.kvc_db) (KeyValue, error) {
		k, kn := cbytes(key)
		defer C.free(unsafe.Pointer(k))
		var out *C.kvc_kv
		var cerr *C.kvc_error
		code := C.kvc_get(h, k, kn, boolInt(o.serializable), &out, &cerr)
		if err := toError("Get", code, cerr); err != nil {
			return KeyValue{}, err
		}
		defer C.kvc_kv_free(out)
		return goKV(out), nil
	})
}

func (d *db) Exists(ctx context.Context, key string, opts ...Option) (bool, error) {
	_, err := d.Get(ctx, key, opts...)
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		return false, nil
	}
	return false, err
}

func isNotFound(err error) bool {
	e, ok := err.(*Error)
	return ok && e.Code == int(C.KVC_NOT_FOUND)
}

func (d *db) Set(ctx context.Context, key string, value []byte, opts ...Option) (uint64, error) {
	o := options(opts)
	return call(ctx, d, "Set", func(h *C.kvc_db) (uint64, error) {
		k, kn := cbytes(key)
		defer C.free(unsafe.Pointer(k))
		v, vn := cbytes(string(value))
		defer C.free(unsafe.Pointer(v))
		var rev C.uint64_t
		var cerr *C.kvc_error
		code := C.kvc_set(h, k, kn, v, vn, C.uint64_t(o.lease), &rev, &cerr)
		return uint64(rev), toError("Set", code, cerr)
	})
}

func (d *db) Delete(ctx context.Context, key string, opts ...Option) error {
	o := options(opts)
	_, err := call(ctx, d, "Delete", func(h *C.kvc_db) (struct{}, error) {
		k, kn := cbytes(key)
		defer C.free(unsafe.Pointer(k))
		var cerr *C.kvc_error
		code := C.kvc_delete(h, k, kn, C.uint64_t(o.expectRevision), &cerr)
		return struct{}{}, toError("Delete", code, cerr)
	})
	return err
}

func (d *db) CAS(ctx context.Context, key string, value []byte,
	expectRevision uint64) (uint64, error) {
	return call(ctx, d, "CAS", func(h *C.kvc_db) (uint64, error) {
		k, kn := cbytes(key)
		defer C.free(unsafe.Pointer(k))
		v, vn := cbytes(string(value))
		defer C.free(unsafe.Pointer(v))
		var rev C.uint64_t
		var cerr *C.kvc_error
		code := C.kvc_cas(h, k, kn, v, vn, C.uint64_t(expectRevision), &rev, &cerr)
		return uint64(rev), toError("CAS", code, cerr)
	})
}

func (d *db) ListPage(ctx context.Context, prefix, after string, limit uint64,
	opts ...Option) (Page, error) {
	o := options(opts)
	return call(ctx, d, "List", func(h *C.kvc_db) (Page, error) {
		p, pn := cbytes(prefix)
		defer C.free(unsafe.Pointer(p))
		a, an := cbytes(after)
		defer C.free(unsafe.Pointer(a))
		var out *C.kvc_kv_list
		var cerr *C.kvc_error
		code := C.kvc_list(h, p, pn, a, an, C.uint64_t(limit), boolInt(o.serializable), &out,
			&cerr)
		if err := toError("List", code, cerr); err != nil {
			return Page{}, err
		}
		defer C.kvc_kv_list_free(out)
		page := Page{KVs: make([]KeyValue, 0, int(out.count)), More: out.more != 0}
		for i := C.size_t(0); i < out.count; i++ {
			page.KVs = append(page.KVs, goKV(C.kvcgo_item(out, i)))
		}
		return page, nil
	})
}

func (d *db) List(ctx context.Context, prefix string, opts ...Option) ([]KeyValue, error) {
	var all []KeyValue
	after := ""
	for {
		page, err := d.ListPage(ctx, prefix, after, 0, opts...)
		if err != nil {
			return nil, err
		}
		all = append(all, page.KVs...)
		if !page.More || len(page.KVs) == 0 {
			return all, nil
		}
		after = page.KVs[len(page.KVs)-1].Key
	}
}

func (d *db) LeaseGrant(ctx context.Context, ttl time.Duration) (uint64, error) {
	seconds := uint64((ttl + time.Second - 1) / time.Second)
	return call(ctx, d, "LeaseGrant", func(h *C.kvc_db) (uint64, error) {
		var id C.uint64_t
		var cerr *C.kvc_error
		code := C.kvc_lease_grant(h, C.uint64_t(seconds), &id, &cerr)
		return uint64(id), toError("LeaseGrant", code, cerr)
	})
}

func (d *db) LeaseKeepAlive(ctx context.Context, id uint64) error {
	_, err := call(ctx, d, "LeaseKeepAlive", func(h *C.kvc_db) (struct{}, error) {
		var cerr *C.kvc_error
		code := C.kvc_lease_keep_alive(h, C.uint64_t(id), &cerr)
		return struct{}{}, toError("LeaseKeepAlive", code, cerr)
	})
	return err
}

func (d *db) LeaseRevoke(ctx context.Context, id uint64) error {
	_, err := call(ctx, d, "LeaseRevoke", func(h *C.kvc_db) (struct{}, error) {
		var cerr *C.kvc_error
		code := C.kvc_lease_revoke(h, C.uint64_t(id), &cerr)
		return struct{}{}, toError("LeaseRevoke", code, cerr)
	})
	return err
}

// EventType says what happened to a key.
type EventType int

const (
	EventPut    EventType = 1
	EventDelete EventType = 2
)

// Event is one change a Watcher delivers. For a delete, KV holds the key and ModRevision only.
type Event struct {
	Type EventType
	KV   KeyValue
}

// Watcher delivers a watch's events, in order, on Events(). The channel closes when the watch
// ends: by Close (Err() nil), or by itself (Err() says why: the history it needed was
// compacted, the member or client stopped). Events are queued in memory while nobody reads.
type Watcher struct {
	d      *db
	id     C.uint64_t
	handle cgo.Handle
	events chan Event

	mu    sync.Mutex // guards queue, ended, err
	queue []Event
	ended bool
	err   error

	wake        chan struct{}
	stopped     chan struct{} // closed by Close: the forwarder stops at once
	done        chan struct{} // closed when the forwarder has returned (Events is closed)
	stopOnce    sync.Once
	releaseOnce sync.Once
}

// Events is the watch's channel.
func (w *Watcher) Events() <-chan Event { return w.events }

// Err is why the watch ended by itself, once Events is closed; nil after Close.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (d *db) Watch(ctx context.Context, key string, opts ...Option) (*Watcher, error) {
	o := options(opts)
	w := &Watcher{d: d, events: make(chan Event), wake: make(chan struct{}, 1),
		stopped: make(chan struct{}), done: make(chan struct{})}
	w.handle = cgo.NewHandle(w)
	go w.forward()
	ran := make(chan struct{}) // closed once the C call below has returned
	_, err := call(ctx, d, "Watch", func(h *C.kvc_db) (struct{}, error) {
		defer close(ran)
		k, kn := cbytes(key)
		defer C.free(unsafe.Pointer(k))
		var id C.uint64_t
		var cerr *C.kvc_error
		code := C.kvcgo_watch(h, k, kn, boolInt(o.prefix), C.uint64_t(o.startRevision),
			C.uintptr_t(w.handle), &id, &cerr)
		if err := toError("Watch", code, cerr); err != nil {
			return struct{}{}, err
		}
		w.mu.Lock()
		w.id = id
		w.mu.Unlock()
		// Under d.mu (read): the db is not closed, so its close will see this watcher.
		d.wmu.Lock()
		d.watchers[w] = struct{}{}
		d.wmu.Unlock()
		return struct{}{}, nil
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.ctxErr != nil {
			// Abandoned by its context: the C call may still start the watch, so it is
			// stopped (and its handle freed) only once that call has returned.
			go func() {
				<-ran
				w.Close()
			}()
		} else {
			w.Close()
		}
		return nil, err
	}
	return w, nil
}

// push queues an event (from the C callback: it must not block nor call into C).
func (w *Watcher) push(ev Event) {
	w.mu.Lock()
	if !w.ended {
		w.queue = append(w.queue, ev)
	}
	w.mu.Unlock()
	w.signal()
}

func (w *Watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// finish records the end of the watch; the forwarder delivers what is queued, then closes.
func (w *Watcher) finish(err error) {
	w.mu.Lock()
	if !w.ended {
		w.ended = true
		w.err = err
	}
	w.mu.Unlock()
	w.signal()
}

// release frees the callback's handle, once no callback can run any more.
func (w *Watcher) release() { w.releaseOnce.Do(w.handle.Delete) }

func (w *Watcher) forward() {
	defer close(w.done)
	defer close(w.events)
	for {
		w.mu.Lock()
		queue, ended := w.queue, w.ended
		w.queue = nil
		w.mu.Unlock()
		for _, ev := range queue {
			select {
			case w.events <- ev:
			case <-w.stopped:
				return
			}
		}
		if len(queue) > 0 {
			continue
		}
		if ended {
			return
		}
		select {
		case <-w.wake:
		case <-w.stopped:
			return
		}
	}
}

// Close stops the watch: when it returns no event will be delivered any more and Events is
// closed. It may be called more than once, from any goroutine, but not while a callback of
// this package runs (it never does in user code).
func (w *Watcher) Close() error {
	w.stopOnce.Do(func() {
		close(w.stopped)
		w.d.mu.RLock()
		if !w.d.closed {
			w.mu.Lock()
			id := w.id
			w.mu.Unlock()
			if id != 0 {
				C.kvc_unwatch(w.d.h, id) // returns once the callback is not running, nor will
			}
			w.d.wmu.Lock()
			delete(w.d.watchers, w)
			w.d.wmu.Unlock()
			w.release()
		}
		w.d.mu.RUnlock()
		w.finish(nil)
	})
	<-w.done
	return nil
}
