#include "support/http_stream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

namespace kvc::test {

HttpStream::HttpStream(const std::string& http_addr, const std::string& target,
                       const std::vector<std::string>& headers, int receive_buffer) {
  const std::size_t colon = http_addr.rfind(':');
  if (colon == std::string::npos) return;
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return;
  if (receive_buffer > 0) {
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(std::atoi(http_addr.c_str() + colon + 1)));
  if (::inet_pton(AF_INET, http_addr.substr(0, colon).c_str(), &a.sin_addr) != 1 ||
      ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close();
    return;
  }
  std::string req = "GET " + target + " HTTP/1.1\r\nHost: kvc\r\n";
  for (const std::string& h : headers) req += h + "\r\n";
  req += "\r\n";
  if (::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    close();
  }
}

HttpStream::~HttpStream() { close(); }

void HttpStream::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool HttpStream::read_until(const std::function<bool(const std::string&)>& done,
                            std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(body_) && fd_ >= 0 && !eof_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 100))) <= 0) continue;
    char buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      eof_ = true;
      break;
    }
    raw_.append(buf, static_cast<std::size_t>(n));
    decode();
  }
  return done(body_);
}

bool HttpStream::head_read(std::chrono::milliseconds timeout) {
  return read_until([this](const std::string&) { return status_ != 0; }, timeout);
}

void HttpStream::decode() {
  if (status_ == 0) {
    const std::size_t end = raw_.find("\r\n\r\n");
    if (end == std::string::npos) return;
    head_ = raw_.substr(0, end);
    raw_.erase(0, end + 4);
    status_ = head_.size() > 12 ? std::atoi(head_.c_str() + 9) : -1;  // "HTTP/1.1 200 ..."
    chunked_ = head_.find("Transfer-Encoding: chunked") != std::string::npos;
  }
  if (!chunked_) {
    body_ += raw_;
    raw_.clear();
    return;
  }
  for (;;) {
    const std::size_t line = raw_.find("\r\n");
    if (line == std::string::npos) return;
    const std::size_t size = std::strtoul(raw_.c_str(), nullptr, 16);
    if (raw_.size() < line + 2 + size + 2) return;
    body_.append(raw_, line + 2, size);
    raw_.erase(0, line + 2 + size + 2);
    if (size == 0) return;  // the last chunk
  }
}

}  // namespace kvc::test
