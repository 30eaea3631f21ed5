#include "kvc/net/connection.h"

#include <gtest/gtest.h>

#include <vector>

namespace kvc::net {
namespace {

// Runs a loop until `done()` or a bound of loop iterations (each iteration may block until an
// event; a 5 s timer guarantees the test cannot hang).
class LoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &guard_);
    uv_timer_start(
        &guard_, [](uv_timer_t* t) { uv_stop(t->loop); }, 5000, 0);
    uv_unref(reinterpret_cast<uv_handle_t*>(&guard_));
  }
  void TearDown() override {
    uv_close(reinterpret_cast<uv_handle_t*>(&guard_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);  // let every close callback run
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }
  template <typename Pred>
  bool run_until(Pred done) {
    for (int i = 0; i < 100000 && !done(); ++i) {
      if (uv_run(&loop_, UV_RUN_ONCE) == 0 && !done()) return false;
    }
    return done();
  }

  uv_loop_t loop_{};
  uv_timer_t guard_{};
};

std::string framed(std::string_view payload) {
  std::string f;
  wire::append_frame(f, payload);
  return f;
}

TEST_F(LoopTest, EchoesFramesBothWays) {
  Listener listener(&loop_, {});
  std::vector<std::shared_ptr<Connection>> accepted;
  ASSERT_TRUE(listener
                  .listen(*parse_address("127.0.0.1:0"),
                          [&](std::shared_ptr<Connection> c) {
                            c->start(
                                [](Connection& self, std::string_view p) {
                                  self.send(framed("echo:" + std::string(p)));
                                },
                                [](Connection&, const Status&) {});
                            accepted.push_back(std::move(c));
                          })
                  .ok());
  EXPECT_NE(listener.bound().port, 0);

  std::shared_ptr<Connection> client;
  std::vector<std::string> got;
  Status closed_with;
  int closes = 0;
  connect(&loop_, listener.bound(), {}, 1000, [&](Result<std::shared_ptr<Connection>> r) {
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    client = *r;
    client->start([&](Connection&, std::string_view p) { got.emplace_back(p); },
                  [&](Connection&, const Status& s) {
                    closed_with = s;
                    ++closes;
                  });
    for (int i = 0; i < 100; ++i) client->send(framed("m" + std::to_string(i)));
  });
  ASSERT_TRUE(run_until([&] { return got.size() == 100; }));
  EXPECT_EQ(got.front(), "echo:m0");
  EXPECT_EQ(got.back(), "echo:m99");

  // The server side hangs up: the client learns it once, with a reason.
  accepted[0]->close(Status::shutting_down("bye"));
  ASSERT_TRUE(run_until([&] { return closes == 1; }));
  EXPECT_EQ(closed_with.code(), Code::kUnavailable);
  listener.close();
}

TEST_F(LoopTest, OversizedFrameClosesTheConnectionWithAReason) {
  Listener listener(&loop_, {.max_frame_bytes = 100});
  Status server_close;
  bool server_closed = false;
  int frames = 0;
  std::vector<std::shared_ptr<Connection>> accepted;
  ASSERT_TRUE(listener
                  .listen(*parse_address("127.0.0.1:0"),
                          [&](std::shared_ptr<Connection> c) {
                            c->start([&](Connection&, std::string_view) { ++frames; },
                                     [&](Connection&, const Status& s) {
                                       server_close = s;
                                       server_closed = true;
                                     });
                            accepted.push_back(std::move(c));
                          })
                  .ok());
  std::shared_ptr<Connection> client;
  connect(&loop_, listener.bound(), {}, 1000, [&](Result<std::shared_ptr<Connection>> r) {
    ASSERT_TRUE(r.ok());
    client = *r;
    client->start([](Connection&, std::string_view) {}, [](Connection&, const Status&) {});
    client->send(framed("ok"));
    client->send(framed(std::string(101, 'x')));
  });
  ASSERT_TRUE(run_until([&] { return server_closed; }));
  EXPECT_EQ(frames, 1);
  EXPECT_EQ(server_close.code(), Code::kResourceExhausted);
  EXPECT_NE(server_close.message().find("exceeds the maximum"), std::string::npos);
  client->close(Status());
  listener.close();
}

TEST_F(LoopTest, AnOversizedFrameCanBeSkippedAndRefused) {
  // The owner says why and keeps the connection: the frame is dropped unread and the next one
  // is delivered (its bytes may arrive in the same read as the oversized one, or later).
  ConnectionOptions options;
  options.max_frame_bytes = 100;
  options.on_oversized = [](Connection& c, std::size_t bytes) {
    c.send(framed("refused " + std::to_string(bytes)));
    return true;
  };
  Listener listener(&loop_, options);
  std::vector<std::string> server_got;
  std::vector<std::shared_ptr<Connection>> accepted;
  ASSERT_TRUE(
      listener
          .listen(*parse_address("127.0.0.1:0"),
                  [&](std::shared_ptr<Connection> c) {
                    c->start([&](Connection&, std::string_view p) { server_got.emplace_back(p); },
                             [](Connection&, const Status&) {});
                    accepted.push_back(std::move(c));
                  })
          .ok());
  std::shared_ptr<Connection> client;
  std::vector<std::string> client_got;
  connect(&loop_, listener.bound(), {}, 1000, [&](Result<std::shared_ptr<Connection>> r) {
    ASSERT_TRUE(r.ok());
    client = *r;
    client->start([&](Connection&, std::string_view p) { client_got.emplace_back(p); },
                  [](Connection&, const Status&) {});
    client->send(framed("a"));
    client->send(framed(std::string(300000, 'x')));  // many reads' worth
    client->send(framed("b"));
  });
  ASSERT_TRUE(run_until([&] { return server_got.size() == 2 && client_got.size() == 1; }));
  EXPECT_EQ(server_got[0], "a");
  EXPECT_EQ(server_got[1], "b");
  EXPECT_EQ(client_got[0], "refused 300000");
  EXPECT_FALSE(accepted[0]->closed());
  client->close(Status());
  listener.close();
}

TEST_F(LoopTest, FirstBytesNameAPeerThatDoesNotSpeakKvc) {
  Listener listener(&loop_, {});
  std::vector<std::shared_ptr<Connection>> accepted;
  ASSERT_TRUE(listener
                  .listen(*parse_address("127.0.0.1:0"),
                          [&](std::shared_ptr<Connection> c) {
                            c->start([](Connection&, std::string_view) {},
                                     [](Connection&, const Status&) {});
                            // Not a frame: an HTTP answer.
                            c->send("HTTP/1.1 400 Bad Request\r\n\r\n");
                            accepted.push_back(std::move(c));
                          })
                  .ok());
  Status closed_with;
  bool closed = false;
  std::shared_ptr<Connection> client;
  connect(&loop_, listener.bound(), {}, 1000, [&](Result<std::shared_ptr<Connection>> r) {
    ASSERT_TRUE(r.ok());
    client = *r;
    client->start([](Connection&, std::string_view) {},
                  [&](Connection&, const Status& s) {
                    closed_with = s;
                    closed = true;
                  });
  });
  ASSERT_TRUE(run_until([&] { return closed; }));
  EXPECT_EQ(closed_with.code(), Code::kResourceExhausted);
  EXPECT_EQ(client->first_bytes(), "HTTP/1.1");
  listener.close();
}

TEST_F(LoopTest, ConnectResolvesHostNames) {
  Listener listener(&loop_, {});
  std::vector<std::shared_ptr<Connection>> accepted;
  ASSERT_TRUE(listener
                  .listen(*parse_address("127.0.0.1:0"),
                          [&](std::shared_ptr<Connection> c) {
                            c->start([](Connection&, std::string_view) {},
                                     [](Connection&, const Status&) {});
                            accepted.push_back(std::move(c));
                          })
                  .ok());
  const struct {
    const char* host;
    Code want;
  } cases[] = {{"localhost", Code::kOk}, {"no-such-host.invalid", Code::kNotFound}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.host);
    bool done = false;
    Status got;
    connect(&loop_, Address{.host = c.host, .port = listener.bound().port}, {}, 3000,
            [&](Result<std::shared_ptr<Connection>> r) {
              done = true;
              got = r.status();
              if (r.ok()) (*r)->close(Status());
            });
    ASSERT_TRUE(run_until([&] { return done; }));
    if (c.want == Code::kNotFound) {
      // Or kUnavailable where no resolver answers at all.
      EXPECT_TRUE(got.code() == Code::kNotFound || got.code() == Code::kUnavailable)
          << got.to_string();
    } else {
      EXPECT_EQ(got.code(), c.want) << got.to_string();
    }
  }
  for (auto& c : accepted) c->close(Status());
  listener.close();
}

TEST_F(LoopTest, ConnectToClosedPortFailsWithUnavailable) {
  // Bind a port, then close it so nothing listens there.
  Address target;
  {
    Listener l(&loop_, {});
    ASSERT_TRUE(l.listen(*parse_address("127.0.0.1:0"), [](std::shared_ptr<Connection>) {}).ok());
    target = l.bound();
  }
  bool done = false;
  Status got;
  connect(&loop_, target, {}, 1000, [&](Result<std::shared_ptr<Connection>> r) {
    done = true;
    got = r.status();
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_EQ(got.code(), Code::kUnavailable);
}

TEST_F(LoopTest, SlowReaderPausesThenClosesTheWriterSide) {
  // The server writes to a client that never reads: past close_above it gives up on it.
  Listener listener(&loop_, {.pause_reading_above = 1 << 16, .close_above = 1 << 20});
  Status server_close;
  bool server_closed = false;
  std::vector<std::shared_ptr<Connection>> accepted;
  ASSERT_TRUE(listener
                  .listen(*parse_address("127.0.0.1:0"),
                          [&](std::shared_ptr<Connection> c) {
                            c->start([](Connection&, std::string_view) {},
                                     [&](Connection&, const Status& s) {
                                       server_close = s;
                                       server_closed = true;
                                     });
                            accepted.push_back(c);
                          })
                  .ok());
  std::shared_ptr<Connection> client;
  connect(&loop_, listener.bound(), {}, 1000, [&](Result<std::shared_ptr<Connection>> r) {
    ASSERT_TRUE(r.ok());
    client = *r;  // never started: it does not read
  });
  ASSERT_TRUE(run_until([&] { return client != nullptr && !accepted.empty(); }));
  const std::string chunk = framed(std::string(64 << 10, 'x'));
  for (int i = 0; i < 200 && !server_closed; ++i) {
    accepted[0]->send(chunk);
    uv_run(&loop_, UV_RUN_NOWAIT);
  }
  ASSERT_TRUE(run_until([&] { return server_closed; }));
  EXPECT_EQ(server_close.code(), Code::kResourceExhausted);
  client->close(Status());
  listener.close();
}

}  // namespace
}  // namespace kvc::net
