#include "kvc/net/secret.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "kvc/common/check.h"

namespace kvc::net {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::size_t page_size() {
  static const std::size_t n = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return n;
}

}  // namespace

void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

Result<std::string> load_secret_file(const std::string& path) {
  const std::string what = "secret file " + path;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) return Status::from_errno(what, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::from_errno(what, errno);
  if (!S_ISREG(st.st_mode)) return Status::invalid_argument(what + ": not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::invalid_argument(what + ": accessible by group or others (mode " + mode +
                                    "); run chmod 600 " + path);
  }
  if (st.st_size > static_cast<off_t>(kMaxSecretBytes)) {
    return Status::invalid_argument(what + ": larger than " + std::to_string(kMaxSecretBytes) +
                                    " bytes");
  }
  // Room for the whole file up front, so that appending never reallocates and leaves a copy of
  // the secret behind in freed memory; the stack buffer is wiped on every way out.
  std::string secret;
  secret.reserve(static_cast<std::size_t>(st.st_size) + 1);
  constexpr std::size_t kBuf = 4096;
  char buf[kBuf];
  struct WipeBuf {
    char* b;
    ~WipeBuf() { OPENSSL_cleanse(b, kBuf); }
  } wipe_buf{buf};
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      wipe(secret);
      return Status::from_errno(what, errno);
    }
    if (n == 0) break;
    if (secret.size() + static_cast<std::size_t>(n) > kMaxSecretBytes) {
      wipe(secret);
      return Status::invalid_argument(what + ": larger than " + std::to_string(kMaxSecretBytes) +
                                      " bytes");
    }
    if (secret.size() + static_cast<std::size_t>(n) > secret.capacity()) {
      // The file grew since fstat: move to a larger buffer by hand, wiping the old one.
      std::string bigger;
      bigger.reserve(kMaxSecretBytes + 1);
      bigger.append(secret);
      wipe(secret);
      secret = std::move(bigger);
    }
    secret.append(buf, static_cast<std::size_t>(n));
  }
  if (!secret.empty() && secret.back() == '\n') {
    secret.back() = '\0';
    secret.pop_back();
    if (!secret.empty() && secret.back() == '\r') {
      secret.back() = '\0';
      secret.pop_back();
    }
  }
  if (secret.empty()) return Status::invalid_argument(what + ": empty");
  return secret;
}

SecretBytes::SecretBytes(std::string_view bytes) {
  if (bytes.empty()) return;
  const std::size_t pages = (bytes.size() + page_size() - 1) / page_size();
  mapped_ = pages * page_size();
  void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  KVC_CHECK(p != MAP_FAILED, "mmap for key material failed");
  data_ = static_cast<char*>(p);
  dontdump_ = ::madvise(p, mapped_, MADV_DONTDUMP) == 0;
  locked_ = ::mlock(p, mapped_) == 0;
  std::memcpy(data_, bytes.data(), bytes.size());
  size_ = bytes.size();
}

void SecretBytes::release() {
  if (data_ == nullptr) return;
  OPENSSL_cleanse(data_, mapped_);
  if (locked_) ::munlock(data_, mapped_);
  ::munmap(data_, mapped_);
  data_ = nullptr;
  size_ = mapped_ = 0;
  dontdump_ = locked_ = false;
}

SecretBytes::~SecretBytes() { release(); }

SecretBytes::SecretBytes(SecretBytes&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      mapped_(std::exchange(o.mapped_, 0)),
      dontdump_(std::exchange(o.dontdump_, false)),
      locked_(std::exchange(o.locked_, false)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    mapped_ = std::exchange(o.mapped_, 0);
    dontdump_ = std::exchange(o.dontdump_, false);
    locked_ = std::exchange(o.locked_, false);
  }
  return *this;
}

}  // namespace kvc::net
