#include "fault_proxy.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <list>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "kvc/wire/frame.h"
#include "kvc/wire/messages.h"

namespace kvc::chaos {
namespace {

constexpr std::size_t kMaxFrameBytes = 64u << 20;     // above any member's --max-frame-bytes
constexpr std::size_t kMaxBufferedBytes = 32u << 20;  // per direction, then stop reading
constexpr std::size_t kReadChunk = 64u << 10;

std::uint64_t now_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

// Writes as much of buf[off..] as the socket takes. Returns false on a broken socket.
bool flush_some(int fd, const std::string& buf, std::size_t& off) {
  while (off < buf.size()) {
    const ssize_t n = ::send(fd, buf.data() + off, buf.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
  return true;
}

// Appends what the socket has to `buf`. Returns false on EOF or error.
bool read_some(int fd, std::string& buf) {
  char chunk[kReadChunk];
  for (int i = 0; i < 16; ++i) {
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n > 0) {
      buf.append(chunk, static_cast<std::size_t>(n));
      if (static_cast<std::size_t>(n) < sizeof chunk) return true;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
  return true;
}

// The inode of the TCP socket whose local end is 127.0.0.1:`local_port` and remote end
// 127.0.0.1:`remote_port` (/proc/net/tcp), or 0.
unsigned long socket_inode(std::uint16_t local_port, std::uint16_t remote_port) {
  std::ifstream tcp("/proc/net/tcp");
  char local[32], remote[32];
  std::snprintf(local, sizeof local, "0100007F:%04X", local_port);
  std::snprintf(remote, sizeof remote, "0100007F:%04X", remote_port);
  std::string line;
  std::getline(tcp, line);  // the header
  while (std::getline(tcp, line)) {
    char l[64], r[64];
    unsigned long inode = 0;
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
    if (std::sscanf(line.c_str(), "%*s %63s %63s %*s %*s %*s %*s %*s %*s %lu", l, r, &inode) == 3 &&
        std::string(l) == local && std::string(r) == remote) {
      return inode;
    }
  }
  return 0;
}

// The --name of the kvc-node process that holds socket `inode`, or "".
std::string kvc_node_holding(unsigned long inode) {
  const std::string want = "socket:[" + std::to_string(inode) + "]";
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return "";
  std::string found;
  while (dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string dir = std::string("/proc/") + e->d_name;
    std::string comm;
    std::getline(std::ifstream(dir + "/comm"), comm);
    if (comm.rfind("kvc-node", 0) != 0) continue;
    DIR* fds = ::opendir((dir + "/fd").c_str());
    if (fds == nullptr) continue;
    bool holds = false;
    while (dirent* f = ::readdir(fds)) {
      char target[64];
      const std::string link = dir + "/fd/" + f->d_name;
      const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
      if (n > 0 && std::string_view(target, static_cast<std::size_t>(n)) == want) {
        holds = true;
        break;
      }
    }
    ::closedir(fds);
    if (!holds) continue;
    std::ifstream cmdline(dir + "/cmdline", std::ios::binary);
    std::vector<std::string> args;
    for (std::string a; std::getline(cmdline, a, '\0');) args.push_back(a);
    for (std::size_t i = 0; i + 1 < args.size(); ++i) {
      if (args[i] == "--name") found = args[i + 1];
    }
    break;
  }
  ::closedir(proc);
  return found;
}

// The member (its --name) that dialled the proxy connection `fd`, found through the kernel.
std::string dialler_of(int fd) {
  sockaddr_in peer{}, self{};
  socklen_t len = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return "";
  len = sizeof self;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &len) != 0) return "";
  const unsigned long inode = socket_inode(ntohs(peer.sin_port), ntohs(self.sin_port));
  return inode == 0 ? "" : kvc_node_holding(inode);
}

}  // namespace

std::string LinkFault::to_string() const {
  if (healthy()) return "healthy";
  if (cut) return "cut";
  std::string s;
  if (drop >= 1) {
    s = "blackhole";
  } else if (drop > 0) {
    s = "drop=" + std::to_string(static_cast<int>(drop * 100 + 0.5)) + "%";
  }
  if (delay_ms != 0 || jitter_ms != 0) {
    if (!s.empty()) s += " ";
    s += "delay=" + std::to_string(delay_ms) + "ms";
    if (jitter_ms != 0) s += "+" + std::to_string(jitter_ms) + "ms";
  }
  return s;
}

class FaultProxy::Impl {
 public:
  Impl(std::uint64_t seed, bool tls) : rng_(seed), tls_(tls) {}

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake();
    if (thread_.joinable()) thread_.join();
    for (Conn& c : conns_) close_conn(c);
    for (Listener& l : listeners_) ::close(l.fd);
    if (wake_[0] >= 0) ::close(wake_[0]);
    if (wake_[1] >= 0) ::close(wake_[1]);
  }

  Status start() {
    if (::pipe(wake_) != 0) return Status::from_errno("proxy pipe", errno);
    set_nonblocking(wake_[0]);
    set_nonblocking(wake_[1]);
    thread_ = std::thread([this] { run(); });
    return Status();
  }

  Result<std::uint16_t> add_member(int index, const std::string& name, std::uint16_t target_port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return Status::from_errno("proxy socket", errno);
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 128) != 0) {
      const int err = errno;
      ::close(fd);
      return Status::from_errno("proxy bind/listen on 127.0.0.1:0", err);
    }
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    set_nonblocking(fd);
    {
      std::lock_guard<std::mutex> lock(mu_);
      listeners_.push_back({fd, index, target_port});
      names_[name] = index;
    }
    wake();
    return static_cast<std::uint16_t>(ntohs(a.sin_port));
  }

  void set_fault(int from, int to, const LinkFault& f) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (f.healthy()) {
        faults_.erase({from, to});
      } else {
        faults_[{from, to}] = f;
      }
      if (f.cut) {
        for (Conn& c : conns_) {
          if (c.from == from && c.to == to && !c.dead) {
            c.dead = true;
            ++stats_.connections_cut;
          }
        }
      }
    }
    wake();
  }

  LinkFault fault(int from, int to) const {
    std::lock_guard<std::mutex> lock(mu_);
    return fault_locked(from, to);
  }

  void heal_all() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      faults_.clear();
    }
    wake();
  }

  std::map<std::pair<int, int>, LinkFault> faults() const {
    std::lock_guard<std::mutex> lock(mu_);
    return faults_;
  }

  ProxyStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  struct Listener {
    int fd = -1;
    int index = -1;
    std::uint16_t target_port = 0;
  };
  struct Delayed {
    std::uint64_t due_ms = 0;
    std::string frame;  // header + payload
  };
  struct Conn {
    int in_fd = -1;   // from the dialling member
    int out_fd = -1;  // to the member behind this proxy port
    bool out_ready = false;
    int from = -1;  // the sender, -1 until its Hello is read (or when unknown)
    int to = -1;
    bool hello_done = false;
    bool dead = false;
    std::string in_buf;  // sender bytes not yet cut into frames
    std::deque<Delayed> delayed;
    std::size_t delayed_bytes = 0;
    std::uint64_t last_due_ms = 0;
    std::string out_buf;  // frames ready for the member
    std::size_t out_off = 0;
    std::string back_buf;  // the member's bytes for the sender
    std::size_t back_off = 0;
  };

  LinkFault fault_locked(int from, int to) const {
    auto it = faults_.find({from, to});
    return it == faults_.end() ? LinkFault{} : it->second;
  }

  void wake() {
    if (wake_[1] < 0) return;
    const char b = 1;
    (void)!::write(wake_[1], &b, 1);
  }

  static void close_conn(Conn& c) {
    if (c.in_fd >= 0) ::close(c.in_fd);
    if (c.out_fd >= 0) ::close(c.out_fd);
    c.in_fd = c.out_fd = -1;
  }

  void accept_all(const Listener& l) {
    for (int i = 0; i < 64; ++i) {
      const int fd = ::accept(l.fd, nullptr, nullptr);
      if (fd < 0) return;
      set_nonblocking(fd);
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      Conn c;
      c.in_fd = fd;
      c.to = l.index;
      c.out_fd = ::socket(AF_INET, SOCK_STREAM, 0);
      ++stats_.connections;
      if (c.out_fd < 0) {
        close_conn(c);
        continue;
      }
      set_nonblocking(c.out_fd);
      ::setsockopt(c.out_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(l.target_port);
      const int rc = ::connect(c.out_fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
      if (rc == 0) {
        c.out_ready = true;
      } else if (errno != EINPROGRESS) {
        close_conn(c);  // the member is down: the sender sees its connection close
        continue;
      }
      conns_.push_back(std::move(c));
    }
  }

  // Cuts complete frames (TLS records with tls_) off c.in_buf and routes each by its link's
  // fault.
  void take_frames(Conn& c, std::uint64_t now) {
    std::size_t pos = 0;
    while (tls_ && !c.dead && c.in_buf.size() - pos >= 5) {
      const auto* h = reinterpret_cast<const unsigned char*>(c.in_buf.data() + pos);
      // Content types 20..23 (change_cipher_spec, alert, handshake, application_data), 3.x.
      if (h[0] < 20 || h[0] > 23 || h[1] != 3) {
        c.dead = true;  // not TLS: let the member's own checks see nothing more
        break;
      }
      const std::size_t len = (std::size_t{h[3]} << 8) | std::size_t{h[4]};
      if (c.in_buf.size() - pos < 5 + len) break;
      std::string record = c.in_buf.substr(pos, 5 + len);
      pos += 5 + len;
      route(c, std::move(record), now);
    }
    while (!tls_ && !c.dead && c.in_buf.size() - pos >= 4) {
      const auto* h = reinterpret_cast<const unsigned char*>(c.in_buf.data() + pos);
      const std::size_t len = (std::size_t{h[0]} << 24) | (std::size_t{h[1]} << 16) |
                              (std::size_t{h[2]} << 8) | std::size_t{h[3]};
      if (len == 0 || len > kMaxFrameBytes) {
        c.dead = true;  // not our protocol: let the member's own checks see nothing more
        break;
      }
      if (c.in_buf.size() - pos < 4 + len) break;
      std::string frame = c.in_buf.substr(pos, 4 + len);
      pos += 4 + len;
      route(c, std::move(frame), now);
    }
    c.in_buf.erase(0, pos);
  }

  void route(Conn& c, std::string frame, std::uint64_t now) {
    if (!c.hello_done && tls_) {
      c.hello_done = true;
      auto it = names_.find(dialler_of(c.in_fd));
      if (it != names_.end()) c.from = it->second;
      ++(c.from >= 0 ? stats_.senders_found : stats_.senders_unknown);
      if (c.from >= 0 && fault_locked(c.from, c.to).cut) {
        c.dead = true;
        ++stats_.connections_cut;
        return;
      }
    }
    if (!c.hello_done) {
      c.hello_done = true;
      Result<wire::Envelope> env =
          wire::open_envelope(std::string_view(frame).substr(wire::kFrameHeaderBytes));
      if (env.ok() && env->kind == wire::FrameKind::kHello) {
        Result<wire::Hello> hello = wire::decode_hello(*env->body);
        if (hello.ok()) {
          auto it = names_.find(hello->name);
          if (it != names_.end()) c.from = it->second;
        }
      }
      if (c.from >= 0 && fault_locked(c.from, c.to).cut) {
        c.dead = true;
        ++stats_.connections_cut;
        return;
      }
    }
    const LinkFault f = c.from >= 0 ? fault_locked(c.from, c.to) : LinkFault{};
    if (f.drop > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < f.drop) {
      ++stats_.frames_dropped;
      return;
    }
    ++stats_.frames_forwarded;
    stats_.bytes_forwarded += frame.size();
    if (f.delay_ms == 0 && f.jitter_ms == 0 && c.delayed.empty()) {
      c.out_buf += frame;
      return;
    }
    std::uint64_t due = now + f.delay_ms;
    if (f.jitter_ms != 0) due += std::uniform_int_distribution<std::uint32_t>(0, f.jitter_ms)(rng_);
    due = std::max(due, c.last_due_ms);  // a TCP stream keeps its order
    c.last_due_ms = due;
    if (f.delay_ms != 0 || f.jitter_ms != 0) ++stats_.frames_delayed;
    c.delayed_bytes += frame.size();
    c.delayed.push_back({due, std::move(frame)});
  }

  void release_due(Conn& c, std::uint64_t now) {
    while (!c.delayed.empty() && c.delayed.front().due_ms <= now) {
      c.delayed_bytes -= c.delayed.front().frame.size();
      c.out_buf += c.delayed.front().frame;
      c.delayed.pop_front();
    }
    if (c.out_off > 0 && (c.out_off == c.out_buf.size() || c.out_off > (1u << 20))) {
      c.out_buf.erase(0, c.out_off);
      c.out_off = 0;
    }
  }

  void run() {
    std::vector<pollfd> fds;
    // What each pollfd stands for: -1 wake pipe, -2 - i listener i, else conn index * 2 (+1 for
    // the member side).
    std::vector<long> what;
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      const std::uint64_t now = now_ms();
      fds.clear();
      what.clear();
      fds.push_back({wake_[0], POLLIN, 0});
      what.push_back(-1);
      for (std::size_t i = 0; i < listeners_.size(); ++i) {
        fds.push_back({listeners_[i].fd, POLLIN, 0});
        what.push_back(-2 - static_cast<long>(i));
      }
      std::uint64_t next_due = now + 1000;
      long ci = 0;
      for (auto it = conns_.begin(); it != conns_.end(); ++it, ++ci) {
        Conn& c = *it;
        release_due(c, now);
        if (!c.delayed.empty()) next_due = std::min(next_due, c.delayed.front().due_ms);
        const bool backed_up = c.out_buf.size() - c.out_off + c.delayed_bytes > kMaxBufferedBytes;
        short in_events = 0;
        if (!backed_up) in_events |= POLLIN;
        if (c.back_off < c.back_buf.size()) in_events |= POLLOUT;
        fds.push_back({c.in_fd, in_events, 0});
        what.push_back(ci * 2);
        short out_events = 0;
        if (!c.out_ready) {
          out_events = POLLOUT;
        } else {
          if (c.back_buf.size() - c.back_off < kMaxBufferedBytes) out_events |= POLLIN;
          if (c.out_off < c.out_buf.size()) out_events |= POLLOUT;
        }
        fds.push_back({c.out_fd, out_events, 0});
        what.push_back(ci * 2 + 1);
      }
      const int timeout =
          static_cast<int>(next_due > now ? std::min<std::uint64_t>(next_due - now, 1000) : 0);
      lock.unlock();
      const int n = ::poll(fds.data(), fds.size(), timeout);
      lock.lock();
      if (stop_) break;
      if (n < 0 && errno != EINTR) break;
      const std::uint64_t after = now_ms();
      std::vector<Conn*> index;
      for (Conn& c : conns_) index.push_back(&c);
      std::vector<Listener> listeners = listeners_;
      for (std::size_t k = 0; k < fds.size() && n > 0; ++k) {
        const short re = fds[k].revents;
        if (re == 0) continue;
        const long w = what[k];
        if (w == -1) {
          char buf[256];
          while (::read(wake_[0], buf, sizeof buf) > 0) {
          }
          continue;
        }
        if (w <= -2) {
          accept_all(listeners[static_cast<std::size_t>(-2 - w)]);
          continue;
        }
        Conn& c = *index[static_cast<std::size_t>(w / 2)];
        if (c.dead) continue;
        if (w % 2 == 0) {  // the sender's side
          if (re & POLLIN) {
            if (!read_some(c.in_fd, c.in_buf)) {
              c.dead = true;
            } else {
              take_frames(c, after);
              release_due(c, after);
              if (!c.dead && c.out_ready && !flush_some(c.out_fd, c.out_buf, c.out_off)) {
                c.dead = true;
              }
            }
          } else if (re & (POLLERR | POLLHUP | POLLNVAL)) {
            c.dead = true;
          }
          if (!c.dead && (re & POLLOUT)) {
            if (!flush_some(c.in_fd, c.back_buf, c.back_off)) c.dead = true;
            if (c.back_off == c.back_buf.size()) {
              c.back_buf.clear();
              c.back_off = 0;
            }
          }
        } else {  // the member's side
          if (!c.out_ready) {
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(c.out_fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0 || (re & (POLLERR | POLLHUP | POLLNVAL))) {
              c.dead = true;
              continue;
            }
            c.out_ready = true;
          }
          if (re & POLLIN) {
            if (!read_some(c.out_fd, c.back_buf)) c.dead = true;
          } else if (re & (POLLERR | POLLHUP | POLLNVAL)) {
            c.dead = true;
          }
          if (!c.dead && c.out_off < c.out_buf.size()) {
            if (!flush_some(c.out_fd, c.out_buf, c.out_off)) c.dead = true;
          }
        }
      }
      for (auto it = conns_.begin(); it != conns_.end();) {
        if (it->dead) {
          close_conn(*it);
          it = conns_.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  mutable std::mutex mu_;
  bool stop_ = false;                                // guarded by mu_
  std::map<std::pair<int, int>, LinkFault> faults_;  // guarded by mu_
  std::map<std::string, int> names_;                 // guarded by mu_
  std::vector<Listener> listeners_;                  // guarded by mu_
  std::list<Conn> conns_;                            // guarded by mu_ (the loop's)
  ProxyStats stats_;                                 // guarded by mu_
  std::mt19937_64 rng_;                              // guarded by mu_
  const bool tls_;                                   // records, not frames (see the header)
  int wake_[2] = {-1, -1};
  std::thread thread_;
};

FaultProxy::FaultProxy(std::uint64_t seed, bool tls) : impl_(std::make_unique<Impl>(seed, tls)) {}
FaultProxy::~FaultProxy() = default;
Status FaultProxy::start() { return impl_->start(); }
Result<std::uint16_t> FaultProxy::add_member(int index, const std::string& name,
                                             std::uint16_t target_port) {
  return impl_->add_member(index, name, target_port);
}
void FaultProxy::set_fault(int from, int to, const LinkFault& fault) {
  impl_->set_fault(from, to, fault);
}
LinkFault FaultProxy::fault(int from, int to) const { return impl_->fault(from, to); }
void FaultProxy::heal_all() { impl_->heal_all(); }
std::map<std::pair<int, int>, LinkFault> FaultProxy::faults() const { return impl_->faults(); }
ProxyStats FaultProxy::stats() const { return impl_->stats(); }

}  // namespace kvc::chaos
