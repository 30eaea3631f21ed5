// ConfChange encoding and the pure membership transition function.
#include "kvc/raft/conf_change.h"

#include <algorithm>

#include "kvc/common/coding.h"
#include "kvc/common/text.h"

namespace kvc::raft {
namespace {

constexpr std::size_t kHeaderBytes = 14;

void insert_sorted(std::vector<NodeId>& v, NodeId id) {
  v.insert(std::lower_bound(v.begin(), v.end(), id), id);
}
void erase_id(std::vector<NodeId>& v, NodeId id) {
  v.erase(std::remove(v.begin(), v.end(), id), v.end());
}

}  // namespace

std::string_view conf_change_type_name(ConfChangeType type) {
  switch (type) {
    case ConfChangeType::kAddVoter:
      return "add_voter";
    case ConfChangeType::kAddLearner:
      return "add_learner";
    case ConfChangeType::kPromoteLearner:
      return "promote_learner";
    case ConfChangeType::kRemove:
      return "remove";
    case ConfChangeType::kUpdate:
      return "update";
  }
  return "unknown";
}

bool is_voter(const ConfState& conf, NodeId id) {
  return std::binary_search(conf.voters.begin(), conf.voters.end(), id);
}
bool is_learner(const ConfState& conf, NodeId id) {
  return std::binary_search(conf.learners.begin(), conf.learners.end(), id);
}

std::string encode_conf_change(const ConfChange& cc) {
  std::string out;
  out.reserve(kHeaderBytes + cc.context.size());
  out.push_back(static_cast<char>(kConfChangeVersion));
  out.push_back(static_cast<char>(cc.type));
  put_u64_le(out, cc.node);
  put_u32_le(out, static_cast<std::uint32_t>(cc.context.size()));
  out += cc.context;
  return out;
}

Result<ConfChange> decode_conf_change(std::string_view data) {
  if (data.size() < kHeaderBytes) {
    return Status::corruption("conf change: " + std::to_string(data.size()) + " bytes, need 14");
  }
  if (static_cast<std::uint8_t>(data[0]) != kConfChangeVersion) {
    return Status::corruption("conf change: unknown version " +
                              std::to_string(static_cast<unsigned char>(data[0])));
  }
  const auto type = static_cast<std::uint8_t>(data[1]);
  if (type > static_cast<std::uint8_t>(ConfChangeType::kUpdate)) {
    return Status::corruption("conf change: unknown type " + std::to_string(type));
  }
  ConfChange cc;
  cc.type = static_cast<ConfChangeType>(type);
  cc.node = get_u64_le(data.data() + 2);
  const std::uint64_t n = get_u32_le(data.data() + 10);
  if (data.size() - kHeaderBytes != n) {
    return Status::corruption("conf change: context length " + std::to_string(n) + " but " +
                              std::to_string(data.size() - kHeaderBytes) + " bytes follow");
  }
  cc.context = std::string(data.substr(kHeaderBytes));
  if (cc.node == kNoNode) return Status::corruption("conf change: node id 0");
  return cc;
}

Result<ConfState> apply_conf_change(const ConfState& conf, const ConfChange& cc) {
  const std::string who = "node " + kvc::id_hex(cc.node);
  if (cc.node == kNoNode) return Status::invalid_argument("conf change: node id 0");
  const bool voter = is_voter(conf, cc.node);
  const bool learner = is_learner(conf, cc.node);
  ConfState out = conf;
  switch (cc.type) {
    case ConfChangeType::kAddVoter:
      if (voter || learner) return Status::already_exists(who + " is already a member");
      insert_sorted(out.voters, cc.node);
      break;
    case ConfChangeType::kAddLearner:
      if (voter || learner) return Status::already_exists(who + " is already a member");
      insert_sorted(out.learners, cc.node);
      break;
    case ConfChangeType::kPromoteLearner:
      if (!learner) return Status::failed_precondition(who + " is not a learner");
      erase_id(out.learners, cc.node);
      insert_sorted(out.voters, cc.node);
      break;
    case ConfChangeType::kRemove:
      if (!voter && !learner) return Status::not_found(who + " is not a member");
      if (voter && conf.voters.size() == 1) {
        return Status::failed_precondition("cannot remove the last voter " + who);
      }
      erase_id(out.voters, cc.node);
      erase_id(out.learners, cc.node);
      break;
    case ConfChangeType::kUpdate:
      if (!voter && !learner) return Status::not_found(who + " is not a member");
      break;
  }
  return out;
}

}  // namespace kvc::raft
