// Package kvrocks adapts an embedded kvc member to the Apache Kvrocks controller's store
// engine interface, so the controller can embed kvc where its own engines (etcd, ZooKeeper,
// the embedded Raft one) sit.
//
// The controller's interface is engine.Engine in github.com/apache/kvrocks-controller
// (store/engine/engine.go). This package cannot import that module (kvc's Go package uses the
// standard library only), so it declares the identical interface and Entry type below. Go's
// interfaces are structural, but Entry is a named type in the signature of List, so the
// controller plugs the adapter in through a few lines in its own tree, e.g. a file
// store/engine/kvc/kvc.go:
//
//	type Engine struct{ s *kvrocks.Store }
//	func (e Engine) List(ctx context.Context, prefix string) ([]engine.Entry, error) {
//		entries, err := e.s.List(ctx, prefix)
//		out := make([]engine.Entry, len(entries))
//		for i, en := range entries {
//			out[i] = engine.Entry{Key: en.Key, Value: en.Value}
//		}
//		return out, err
//	}
//	// ID, Leader, LeaderChange, IsReady, Get, Exists, Set, Delete, Close: e.s's own.
//
// with kvrocks.Open(opts, kvrocks.Config{NotFound: consts.ErrNotFound}) in its engine
// selection (cmd/server), so that errors.Is(err, consts.ErrNotFound) holds for a missing key
// exactly as with its etcd engine.
package kvrocks

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"kvc.dev/kvc"
)

// Entry is the controller's engine.Entry: a key relative to the listed prefix, and its value.
type Entry struct {
	Key   string
	Value []byte
}

// Engine is the controller's engine.Engine, method for method.
type Engine interface {
	ID() string
	Leader() string
	LeaderChange() <-chan bool
	IsReady(ctx context.Context) bool

	Get(ctx context.Context, key string) ([]byte, error)
	Exists(ctx context.Context, key string) (bool, error)
	Set(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix string) ([]Entry, error)

	Close() error
}

var _ Engine = (*Store)(nil)

// Config is what the host adds to kvc's own options.
type Config struct {
	// NotFound is the host's own not-found error (the controller's consts.ErrNotFound): Get's
	// error for a missing key then matches it with errors.Is, as well as kvc.ErrNotFound.
	NotFound error
}

// Store is a kvc member behind the controller's engine interface.
type Store struct {
	e        *kvc.Engine
	cfg      Config
	changes  chan bool
	quit     chan struct{}
	done     chan struct{}
	closeErr error
	once     sync.Once
}

// Open starts a kvc member (kvc.Open) and adapts it. Options.Name is the member's name, which
// ID and Leader return.
func Open(opts kvc.Options, cfg Config) (*Store, error) {
	e, err := kvc.Open(opts)
	if err != nil {
		return nil, err
	}
	return New(e, cfg), nil
}

// New adapts an open member; the Store owns it from then on (its Close closes the member) and
// reads its LeaderChanges channel.
func New(e *kvc.Engine, cfg Config) *Store {
	s := &Store{e: e, cfg: cfg, changes: make(chan bool), quit: make(chan struct{}),
		done: make(chan struct{})}
	go s.forward()
	return s
}

// Engine is the kvc member, for the calls the controller's interface lacks (CAS, leases,
// watches).
func (s *Store) Engine() *kvc.Engine { return s.e }

// ID is this member's name, as the controller's engines return their own id: the controller
// decides it leads when Leader() == ID().
func (s *Store) ID() string { return s.e.Name() }

// Leader is the leader's name ("" while none is known).
func (s *Store) Leader() string {
	_, name := s.e.Leader()
	return name
}

// LeaderChange delivers true when this member becomes the leader and false when it stops
// being the leader (only changes: a new leader elsewhere while this member follows sends
// nothing). Like the controller's engines it is unbuffered: an event waits until it is read
// (the events after it queue up in order behind it).
func (s *Store) LeaderChange() <-chan bool { return s.changes }

func (s *Store) forward() {
	defer close(s.done)
	leading := false
	for {
		select {
		case ev, ok := <-s.e.LeaderChanges():
			if !ok {
				return
			}
			if ev.Leads == leading {
				continue
			}
			leading = ev.Leads
			select {
			case s.changes <- leading:
			case <-s.quit:
				return
			}
		case <-s.quit:
			return
		}
	}
}

// IsReady waits until the member knows a leader (and has applied what was committed when it
// learned of it), or until ctx ends: then whether it is ready at that moment. False once
// closed.
func (s *Store) IsReady(ctx context.Context) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if s.e.IsReady() {
			return true
		}
		select {
		case <-ctx.Done():
			return s.e.IsReady()
		case <-s.quit:
			return false
		case <-t.C:
		}
	}
}

// notFound is Get's error for a missing key: kvc's error, also matching the host's NotFound.
type notFound struct {
	err  error
	host error
}

func (e *notFound) Error() string        { return e.err.Error() }
func (e *notFound) Unwrap() error        { return e.err }
func (e *notFound) Is(target error) bool { return e.host != nil && target == e.host }

// Get reads a key (linearizable). A missing key is an error matching kvc.ErrNotFound and
// Config.NotFound.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	kv, err := s.e.Get(ctx, key)
	if err != nil {
		if errors.Is(err, kvc.ErrNotFound) {
			return nil, &notFound{err: err, host: s.cfg.NotFound}
		}
		return nil, err
	}
	return kv.Value, nil
}

// Exists says whether a key exists (a linearizable read).
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	return s.e.Exists(ctx, key)
}

// Set writes a key.
func (s *Store) Set(ctx context.Context, key string, value []byte) error {
	_, err := s.e.Set(ctx, key, value)
	return err
}

// Delete deletes a key; a missing key is no error (as with the controller's etcd engine).
func (s *Store) Delete(ctx context.Context, key string) error {
	err := s.e.Delete(ctx, key)
	if errors.Is(err, kvc.ErrNotFound) {
		return nil
	}
	return err
}

// List returns the keys one level beneath prefix, relative to it, as the controller's etcd
// engine does (FirstLevel).
func (s *Store) List(ctx context.Context, prefix string) ([]Entry, error) {
	kvs, err := s.e.List(ctx, ListPrefix(prefix))
	if err != nil {
		return nil, err
	}
	return FirstLevel(prefix, kvs), nil
}

// ListPrefix is the key prefix List reads: prefix followed by one "/" (a trailing "/" of
// prefix is not doubled).
func ListPrefix(prefix string) string {
	return strings.TrimRight(prefix, "/") + "/"
}

// FirstLevel keeps, of the keys under ListPrefix(prefix), those one level beneath it, with
// keys relative to it. The controller's etcd engine reads every key starting with prefix, skips
// the prefix itself, drops the one character after prefix (the separating "/"), trims leading
// "/"s and skips what still holds a "/" (deeper keys). For the controller's prefixes (no
// trailing "/", children separated by one) this is the same. It differs only where etcd's
// would be wrong: a sibling such as "/a/bc" under prefix "/a/b" (etcd lists it as "", here
// it is not under "/a/b/"), and a prefix with a trailing "/" (etcd drops each child's first
// character; here "/a/b/" lists like "/a/b"). Empty relative keys are skipped.
func FirstLevel(prefix string, kvs []kvc.KeyValue) []Entry {
	p := ListPrefix(prefix)
	entries := make([]Entry, 0, len(kvs))
	for _, kv := range kvs {
		if !strings.HasPrefix(kv.Key, p) {
			continue
		}
		key := strings.TrimLeft(kv.Key[len(p):], "/")
		if key == "" || strings.ContainsRune(key, '/') {
			continue
		}
		entries = append(entries, Entry{Key: key, Value: kv.Value})
	}
	return entries
}

// Close stops the member. Later calls fail (kvc.ErrUsage), IsReady is false and LeaderChange
// delivers nothing more (it is not closed, as the controller's engines do not close theirs).
func (s *Store) Close() error {
	s.once.Do(func() {
		close(s.quit)
		<-s.done
		s.closeErr = s.e.Close()
	})
	return s.closeErr
}
