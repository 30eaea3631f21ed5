// Deliberately broken variants of the write-ahead log, compiled only into kvc_storage_mutable
// (with KVC_MUTATIONS defined) for the tests that show the simulated-disk crash torture
// (tests/storage/wal_torture.h) catches real bugs. The production library kvc_storage contains
// none of this. The switch is a plain global: set it before opening a Wal. Not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace kvc::storage {

enum class WalMutation : std::uint8_t {
  kNone = 0,
  // Wal::sync() reports success without calling fdatasync: acknowledged entries are lost.
  kSyncSkipsFdatasync,
  // Records are accepted without checking their CRC (record.cc): damaged bytes are returned.
  kRecoverySkipsCrc,
};

inline constexpr WalMutation kAllWalMutations[] = {WalMutation::kSyncSkipsFdatasync,
                                                   WalMutation::kRecoverySkipsCrc};

// "wal-sync-skips-fdatasync", "wal-recovery-skips-crc"; "none" for kNone.
inline std::string_view wal_mutation_name(WalMutation m) {
  switch (m) {
    case WalMutation::kNone:
      return "none";
    case WalMutation::kSyncSkipsFdatasync:
      return "wal-sync-skips-fdatasync";
    case WalMutation::kRecoverySkipsCrc:
      return "wal-recovery-skips-crc";
  }
  return "unknown";
}

#ifdef KVC_MUTATIONS
extern WalMutation g_wal_mutation;
#define KVC_WAL_MUTATED(m) (::kvc::storage::g_wal_mutation == ::kvc::storage::WalMutation::m)
#else
#define KVC_WAL_MUTATED(m) false
#endif

}  // namespace kvc::storage
