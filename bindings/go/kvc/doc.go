// Package kvc is the Go interface of kvc, a Raft-replicated metadata store meant to be
// embedded by cluster controllers. It is cgo over kvc's C interface (kvc.h, docs/capi.md):
// an Engine is a member of a cluster running inside this process, a Client speaks to a
// cluster over the network (with a secret, certificates or a token: ClientOptions), and both
// offer the same key-value calls (KV). Errors wrap ErrNotFound, ErrCompareFailed,
// ErrUnavailable, ErrTimeout, ErrUsage or ErrFailed, for errors.Is (also ErrPermissionDenied
// and ErrUnauthenticated), and keep the C library's message.
//
// Building needs libkvc installed (docs/library.md): CGO_CFLAGS="$(pkg-config --cflags kvc)"
// and CGO_LDFLAGS="$(pkg-config --libs kvc)" (docs/go.md). The package kvc.dev/kvc/kvrocks adapts an Engine to the
// Apache Kvrocks controller's store engine interface.
package kvc
