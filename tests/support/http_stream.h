// HttpStream: a streaming HTTP answer (a watch) read over a plain blocking socket, as a program
// without an HTTP library would read it: send one GET, read the head, then decode the chunked
// body as it arrives. For tests of the HTTP watch streams against an in-process Engine or real
// kvc-node processes. Every read is bounded (poll with a deadline); closing the socket is how
// the client ends the stream. Not thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace kvc::test {

class HttpStream {
 public:
  // Connects to `http_addr` ("127.0.0.1:PORT") and sends GET `target` with `headers` ("Name:
  // value"). `receive_buffer` > 0 shrinks the socket's receive buffer first (a slow reader).
  HttpStream(const std::string& http_addr, const std::string& target,
             const std::vector<std::string>& headers = {}, int receive_buffer = 0);
  ~HttpStream();
  HttpStream(const HttpStream&) = delete;
  HttpStream& operator=(const HttpStream&) = delete;

  bool connected() const { return fd_ >= 0; }
  // Reads until `done(body())` holds, the server closes, or `timeout` passes; returns
  // done(body()).
  bool read_until(const std::function<bool(const std::string& body)>& done,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Reads until the head has arrived (bounded); true when it has.
  bool head_read(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  int status() const { return status_; }
  const std::string& head() const { return head_; }  // status line and headers, no CRLFCRLF
  const std::string& body() const { return body_; }  // de-chunked
  bool ended() const { return eof_; }                // the server closed the connection
  void close();

 private:
  void decode();

  int fd_ = -1;
  bool eof_ = false;
  bool chunked_ = false;
  int status_ = 0;
  std::string raw_;  // received, not decoded yet
  std::string head_;
  std::string body_;
};

}  // namespace kvc::test
