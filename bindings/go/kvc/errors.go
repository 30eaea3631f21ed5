package kvc

// #include <kvc/kvc.h>
import "C"

import (
	"errors"
	"fmt"
)

// The errors a call returns wrap one of these, so that errors.Is tells them apart; they are the
// exit-code contract of the kvc binaries (kvc-ctl(1), "EXIT STATUS") that kvc.h returns.
var (
	// ErrFailed: the call failed and nothing was applied (KVC_ERROR).
	ErrFailed = errors.New("kvc: failed")
	// ErrUsage: a bad argument to the call itself, or a closed handle (KVC_USAGE).
	ErrUsage = errors.New("kvc: usage")
	// ErrNotFound: the key, lease or member does not exist (KVC_NOT_FOUND).
	ErrNotFound = errors.New("kvc: not found")
	// ErrCompareFailed: a compare-and-set or compare-and-delete saw another revision.
	ErrCompareFailed = errors.New("kvc: compare failed")
	// ErrUnavailable: no leader, no quorum, shutting down; nothing was applied.
	ErrUnavailable = errors.New("kvc: unavailable")
	// ErrTimeout: the deadline passed after the request was sent, so the outcome is unknown: a
	// write may or may not have been applied (read it back to know). A context that ends
	// while a call runs gives this too (and errors.Is(err, ctx.Err()) holds).
	ErrTimeout = errors.New("kvc: timeout, outcome unknown")

	// Finer than the codes above (an error matching one of these also matches ErrFailed):
	// ErrPermissionDenied: the identity (a token's name, a certificate subject, "anonymous")
	// may not do this (kvc-permissions(5)); nothing was applied.
	ErrPermissionDenied = errors.New("kvc: permission denied")
	// ErrUnauthenticated: the member refused the credentials, e.g. a token its permissions
	// file does not name.
	ErrUnauthenticated = errors.New("kvc: unauthenticated")
)

// Error is a failed call: its kvc.h code and the library's message naming what failed.
type Error struct {
	Code    int    // the kvc_code: 1 failed, 2 usage, 3 not found, 4 compare failed, ...
	Status  string // the status behind the code (kvc_error_status): "permission_denied", ...
	Op      string // the Go call, e.g. "Get"
	Message string // the C library's message
	ctxErr  error  // the context's error, when the context ended during the call
}

func (e *Error) Error() string { return fmt.Sprintf("kvc: %s: %s", e.Op, e.Message) }

// Unwrap returns the sentinel of the code (ErrNotFound, ...).
func (e *Error) Unwrap() error { return sentinel(e.Code) }

// Is also matches ErrPermissionDenied and ErrUnauthenticated by the status, and the context's
// error (context.DeadlineExceeded, context.Canceled) when the call was abandoned because its
// context ended.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrPermissionDenied:
		return e.Status == "permission_denied"
	case ErrUnauthenticated:
		return e.Status == "unauthenticated"
	}
	return e.ctxErr != nil && target == e.ctxErr
}

func sentinel(code int) error {
	switch code {
	case int(C.KVC_USAGE):
		return ErrUsage
	case int(C.KVC_NOT_FOUND):
		return ErrNotFound
	case int(C.KVC_COMPARE_FAILED):
		return ErrCompareFailed
	case int(C.KVC_UNAVAILABLE):
		return ErrUnavailable
	case int(C.KVC_TIMEOUT):
		return ErrTimeout
	default:
		return ErrFailed
	}
}

// toError turns a kvc_code and its kvc_error (freed here) into an *Error; nil for KVC_OK.
func toError(op string, code C.kvc_code, cerr *C.kvc_error) error {
	if cerr != nil {
		defer C.kvc_error_free(cerr)
	}
	if code == C.KVC_OK {
		return nil
	}
	msg, status := "failed", ""
	if cerr != nil {
		msg = C.GoString(C.kvc_error_message(cerr))
		status = C.GoString(C.kvc_error_status(cerr))
	}
	return &Error{Code: int(code), Status: status, Op: op, Message: msg}
}

func usageError(op, msg string) error {
	return &Error{Code: int(C.KVC_USAGE), Status: "invalid_argument", Op: op, Message: msg}
}
