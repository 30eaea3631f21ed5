// EngineHttpBackend: http::Backend over an Engine::Impl (loop thread only).
#pragma once

#include "kvc/http/kv_routes.h"
#include "kvc/server/engine.h"

namespace kvc::server {

class EngineHttpBackend final : public http::Backend {
 public:
  explicit EngineHttpBackend(Engine::Impl& impl) : impl_(impl) {}
  void health(std::function<void(Status)> done) override;
  Readiness ready() override;
  std::string metrics_text() override;
  void call(wire::Request request, std::function<void(wire::Response)> done) override;
  std::string http_address_of(std::uint64_t member_id) override;
  std::string http_scheme() override;
  // HTTP watches are watchers of the member's watch hub (watch_hub.cc) that feed a sink.
  void watch(wire::Request request, std::shared_ptr<http::WatchSink> sink,
             std::function<void(wire::Response ack, std::uint64_t handle)> started) override;
  void cancel_watch(std::uint64_t handle) override;
  // A Bearer token (the permissions file's), else the verified client certificate's subject;
  // with a secret or --client-cert-auth, a request with neither is refused unless its path is
  // one of --http-open-paths. Without them, such a request is `anonymous`.
  // A refusal is counted and logged (Engine::Impl::note_refusal).
  Result<std::string> authenticate(const http::HttpRequest& request) override;

 private:
  Engine::Impl& impl_;
  // The address of the client whose request is being handled, for refusal logs: KvRoutes calls
  // authenticate() and then, in the same turn, call() or watch() (as it keeps the caller).
  std::string peer_;
  Result<std::string> identify(const http::HttpRequest& request);  // authenticate's decision
};

}  // namespace kvc::server
