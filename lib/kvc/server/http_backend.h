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

 private:
  Engine::Impl& impl_;
};

}  // namespace kvc::server
