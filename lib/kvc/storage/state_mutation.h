// Deliberately broken variants of the state machine, compiled only into kvc_storage_mutable
// (with KVC_MUTATIONS defined) for the tests that show the crash and layering checkers catch
// real bugs. The production library kvc_storage contains none of this. The switch is a plain
// global: set it before opening a state machine, in a test process of its own. Not
// thread-safe.
#pragma once

#include <cstdint>

namespace kvc::storage {

enum class StateMutation : std::uint8_t {
  kNone = 0,
  // flush() commits the keys and events first and the applied index in a second transaction,
  // so a crash between them leaves writes that are replayed again (not exactly-once).
  kMetaInSeparateTxn,
  // retire_frozen() forgets to move the owning thread's read view up: reads after it miss
  // what the retired overlay held.
  kStaleReadViewAfterRetire,
  // flush() writes puts but skips tombstones: deleted keys come back after a restart.
  kFlushSkipsTombstones,
  // Stored records are not verified on reading (state_format.cc): a damaged value is served.
  kReadsSkipChecksum,
  // A txn stops after its first write: the rest of its branch is silently dropped (not atomic).
  kTxnAppliesHalf,
  // A txn evaluates only its first compare: the others never send it to the else branch.
  kTxnFirstCompareOnly,
  // A txn's gets run after all of its writes: a get placed before a write of the same key sees
  // that write (it reads the state at the txn's revision, not at its own place in the txn).
  kTxnReadsAfterWrites,
};

#ifdef KVC_MUTATIONS
extern StateMutation g_state_mutation;
#define KVC_STATE_MUTATED(m) (::kvc::storage::g_state_mutation == ::kvc::storage::StateMutation::m)
#else
#define KVC_STATE_MUTATED(m) false
#endif

}  // namespace kvc::storage
