// The cluster's membership as the state machine stores it: who the members are (id, name, peer
// and client addresses, learner or voter) and which ids were removed (so a removed member that
// comes back, even after every survivor restarted, is told to stop), with a binary encoding that
// lands in LMDB (at the index where it was applied) and in snapshot files (kvc-snap(5),
// "MEMBERSHIP"), and the parsing of --initial-cluster that every member and `kvc-snap restore`
// share. It does not decide membership changes (the Raft core does). Plain values and pure
// functions; thread-safe.
//
// Encoding (varints are unsigned LEB128, strings are varint length + bytes):
//   u8 version (1 or 2) | varint count | count x member | (version 2 only:) removed ids
//   member: varint id | string name | string peer_addr | string client_addr | u8 flags
//   flags: bit 0 = learner; the other bits must be zero.
//   removed ids: varint n | n x varint id
// Members appear in ascending id order, ids are non-zero and unique, names are unique; removed
// ids are ascending, non-zero, unique and not those of members. A membership without removed
// ids is written as version 1 (what members before version 2 read and wrote), so the encoding
// of such a membership did not change; both versions are read.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/raft/types.h"

namespace kvc::storage {

inline constexpr std::uint8_t kMembershipVersion = 2;  // the newest version read and written
// The cluster token when none is given. kvc-node must use the same default, because member and
// cluster ids are derived from it (data_dir.h).
inline constexpr std::string_view kDefaultClusterToken = "kvc-cluster";

struct Member {
  std::uint64_t id = 0;
  std::string name;
  std::string peer_addr;    // host:port the other members dial
  std::string client_addr;  // host:port clients dial; empty when not known yet
  bool learner = false;

  friend bool operator==(const Member&, const Member&) = default;
};

struct Membership {
  // Invariant (checked by validate_membership, kept by every constructor in this file):
  // ascending by id, ids non-zero and unique, names unique.
  std::vector<Member> members;
  // Ids of members removed from the cluster, ascending; never the id of a current member.
  // Members refuse a removed id's connections with `removed` set, so that it stops.
  std::vector<std::uint64_t> removed;

  // Voters and learners as the Raft core wants them (both sorted ascending).
  raft::ConfState to_conf_state() const;
  const Member* find(std::uint64_t id) const;
  const Member* find_name(std::string_view name) const;
  bool empty() const { return members.empty(); }
  bool was_removed(std::uint64_t id) const;
  // Records that `id` was removed (keeps `removed` sorted and unique; does not touch members).
  void add_removed(std::uint64_t id);

  friend bool operator==(const Membership&, const Membership&) = default;
};

// Fails with kInvalidArgument naming the first broken rule.
Status validate_membership(const Membership& m);

// `m` must be valid (KVC_CHECK): encoding an invalid membership is a bug.
std::string encode_membership(const Membership& m);
// Fails with kCorruption on truncated, trailing, out-of-order or otherwise invalid input.
Result<Membership> decode_membership(std::string_view data);

// Parses "name=host:port,name=host:port,..." into voters whose ids are
// derive_member_id(cluster_token, name) and whose client addresses are empty. Names must be
// non-empty and free of ',', '=', whitespace and control characters; addresses must be
// host:port with a port in 1..65535; names and addresses must be unique.
Result<Membership> parse_initial_cluster(std::string_view cluster_token,
                                         std::string_view initial_cluster);
// "name=peer_addr" of every member, sorted, joined by ',': the input of derive_cluster_id, and
// a valid --initial-cluster value for printed command lines.
std::string sorted_initial_cluster(const Membership& m);

// "m1 (id 1a2b..., peer 10.0.0.1:2380, voter), ..." for logs and tools.
std::string describe_membership(const Membership& m);
// A member id as 16 lowercase hex digits, as the identity file and the tools print it
// (kvc::id_hex).
std::string member_id_hex(std::uint64_t id);

}  // namespace kvc::storage
