#include "kvc/server/sim_member.h"

#include "kvc/server/engine_impl.h"
#include "kvc/server/engine_util.h"

namespace kvc::server {

Result<std::unique_ptr<SimMember>> SimMember::open(EngineOptions options,
                                                   const SimEnvironment& env) {
  auto impl = std::make_unique<Engine::Impl>(std::move(options));
  KVC_RETURN_IF_ERROR(impl->start_simulated(env));
  return std::unique_ptr<SimMember>(new SimMember(std::move(impl)));
}

SimMember::SimMember(std::unique_ptr<Engine::Impl> impl) : impl_(std::move(impl)) {}
SimMember::~SimMember() = default;

std::uint64_t SimMember::id() const { return impl_->id(); }

void SimMember::tick() {
  if (!impl_->stopping_) impl_->on_tick();
}

void SimMember::flush_timer() {
  if (!impl_->stopping_) impl_->on_flush_timer();
}

void SimMember::scrub_timer() {
  if (!impl_->stopping_ && impl_->scrub_ != nullptr) impl_->scrub_tick();
}

void SimMember::check() { impl_->on_check(); }

void SimMember::deliver(const raft::Message& m) { impl_->on_peer_message(m); }

void SimMember::unreachable(std::uint64_t peer) {
  if (!impl_->stopped_) impl_->node_->report_unreachable(peer);
}

void SimMember::submit(wire::Request req, std::function<void(wire::Response)> reply) {
  impl_->handle_request(std::move(req), std::move(reply));
}

void SimMember::told_removed(const std::string& by) { impl_->on_told_removed(by); }

Result<std::uint64_t> SimMember::lookup_joining(const std::string& name) const {
  return impl_->lookup_joining(name);
}

std::uint64_t SimMember::cluster_id() const { return impl_->cluster_id(); }

void SimMember::stop() { impl_->begin_shutdown(); }

bool SimMember::stopped() const { return impl_->stopped_ || impl_->failed_; }
Status SimMember::failure() const { return impl_->failure(); }
bool SimMember::ready() const { return impl_->is_ready(); }
bool SimMember::damaged() const { return impl_->damaged_; }
bool SimMember::removed() const { return impl_->removed_; }
const raft::Node& SimMember::node() const { return *impl_->node_; }
std::uint64_t SimMember::applied() const { return impl_->state_->applied_index(); }
std::uint64_t SimMember::durable_applied() const { return impl_->state_->durable_index(); }

}  // namespace kvc::server
