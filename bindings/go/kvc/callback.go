package kvc

// #include <stdint.h>
// #include <kvc/kvc.h>
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// The callbacks from C (kvc_watch, kvc_engine_on_leader_change) run on the engine's or the
// client's own thread. They find their Go object through a runtime/cgo.Handle passed as the
// callback's ctx, copy what they are given (valid during the callback only), queue it and
// return: they never block, and never call back into C (kvc.h forbids blocking calls there).

//export kvcGoWatchEvent
func kvcGoWatchEvent(ctx unsafe.Pointer, typ C.int, kv *C.kvc_kv) {
	w, ok := cgo.Handle(uintptr(ctx)).Value().(*Watcher)
	if !ok {
		return
	}
	switch typ {
	case C.KVC_EVENT_PUT, C.KVC_EVENT_DELETE:
		ev := Event{Type: EventType(typ)}
		if kv != nil {
			ev.KV = goKV(kv)
		}
		w.push(ev)
	default: // KVC_EVENT_END: the history it needed was compacted, or the member stops
		w.finish(&Error{Code: int(C.KVC_UNAVAILABLE), Status: "unavailable", Op: "Watch",
			Message: "the watch ended (its history was compacted, or the member stopped)"})
	}
}

//export kvcGoLeaderChange
func kvcGoLeaderChange(ctx unsafe.Pointer, leaderID C.uint64_t, leads C.int) {
	e, ok := cgo.Handle(uintptr(ctx)).Value().(*Engine)
	if !ok {
		return
	}
	e.pushLeader(LeaderEvent{LeaderID: uint64(leaderID), Leads: leads != 0})
}
