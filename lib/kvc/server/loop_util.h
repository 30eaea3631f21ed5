// Threads and hand-offs the Engine uses: an Inbox that runs functions on the loop thread (from
// any thread), and a Worker, one thread that runs posted jobs in order (the disk thread, the
// flush thread). Only server/ starts threads.
#pragma once

#include <uv.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kvc/server/environment.h"

namespace kvc::server {

class Inbox final : public Executor {
 public:
  // Must be called on the loop thread before the loop runs.
  void init(uv_loop_t* loop);
  // Any thread: runs `fn` on the loop thread soon. Dropped after close().
  void post(std::function<void()> fn) override;
  // Loop thread: stops accepting and closes the async handle.
  void close();

 private:
  static void on_async(uv_async_t* handle);
  uv_async_t async_{};
  std::mutex mu_;
  std::vector<std::function<void()>> queue_;  // guarded by mu_
  bool closed_ = false;                       // guarded by mu_
};

class Worker final : public Executor {
 public:
  explicit Worker(std::string name);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Any thread: runs `job` on the worker thread after the jobs posted before it.
  void post(std::function<void()> job) override;
  // Runs the jobs already posted, then stops the thread. Idempotent.
  void stop();
  bool on_worker_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void run();
  std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;  // guarded by mu_
  bool stopping_ = false;                   // guarded by mu_
  std::thread thread_;
};

}  // namespace kvc::server
