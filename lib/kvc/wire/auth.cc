#include "kvc/wire/auth.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "kvc/common/sha256.h"

namespace kvc::wire {
namespace {

constexpr std::string_view kLabel = "kvc-auth-v1";

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
}

void put_bytes(std::string& out, std::string_view b) {
  put_u64(out, b.size());
  out.append(b);
}

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

}  // namespace

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
  std::string secret;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno(what, errno);
    }
    if (n == 0) break;
    secret.append(buf, static_cast<std::size_t>(n));
    if (secret.size() > kMaxSecretBytes) {
      return Status::invalid_argument(what + ": larger than " + std::to_string(kMaxSecretBytes) +
                                      " bytes");
    }
  }
  if (!secret.empty() && secret.back() == '\n') {
    secret.pop_back();
    if (!secret.empty() && secret.back() == '\r') secret.pop_back();
  }
  if (secret.empty()) return Status::invalid_argument(what + ": empty");
  return secret;
}

Result<std::string> make_nonce() {
  std::string nonce(kNonceBytes, '\0');
  std::size_t got = 0;
  for (int attempt = 0; got < nonce.size() && attempt < 100; ++attempt) {
    const ssize_t n = ::getrandom(nonce.data() + got, nonce.size() - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno("getrandom", errno);
    }
    got += static_cast<std::size_t>(n);
  }
  if (got < nonce.size()) return Status::internal("getrandom returned too few bytes");
  return nonce;
}

std::string make_proof(std::string_view secret, Prover prover, Role role, std::uint64_t cluster_id,
                       std::string_view dialer_nonce, std::string_view member_nonce) {
  // Every variable-length part is length-prefixed, so no two inputs share an encoding.
  std::string msg;
  put_bytes(msg, kLabel);
  msg.push_back(static_cast<char>(prover));
  msg.push_back(static_cast<char>(role));
  put_u64(msg, cluster_id);
  put_bytes(msg, dialer_nonce);
  put_bytes(msg, member_nonce);
  return sha256::to_bytes(sha256::hmac(secret, msg));
}

bool proof_matches(std::string_view secret, Prover prover, Role role, std::uint64_t cluster_id,
                   std::string_view dialer_nonce, std::string_view member_nonce,
                   std::string_view proof) {
  if (dialer_nonce.size() != kNonceBytes || member_nonce.size() != kNonceBytes) return false;
  // A side that echoes the other's nonce back is trying to make the two proofs' inputs alike.
  if (dialer_nonce == member_nonce) return false;
  if (proof.size() != kProofBytes) return false;
  return sha256::constant_time_equal(
      make_proof(secret, prover, role, cluster_id, dialer_nonce, member_nonce), proof);
}

Status check_hello_auth(bool member_has_secret, const Hello& hello) {
  if (member_has_secret && hello.nonce.empty()) {
    return Status::failed_precondition(
        "authentication required: this member has a shared secret and the connecting side has "
        "none (give it the cluster's --secret-file)");
  }
  if (!member_has_secret && !hello.nonce.empty()) {
    return Status::failed_precondition(
        "authentication mismatch: the connecting side has a shared secret but this member has "
        "none (give every member and client the same --secret-file, or none)");
  }
  if (!hello.nonce.empty() && hello.nonce.size() != kNonceBytes) {
    return Status::corruption("hello: nonce of " + std::to_string(hello.nonce.size()) +
                              " bytes, expected " + std::to_string(kNonceBytes));
  }
  return Status();
}

Status answer_challenge(std::string_view secret, const Hello& hello, HelloReply* reply) {
  Result<std::string> nonce = make_nonce();
  if (!nonce.ok()) return nonce.status();
  reply->nonce = std::move(*nonce);
  reply->proof =
      make_proof(secret, Prover::kMember, hello.role, reply->cluster_id, hello.nonce, reply->nonce);
  return Status();
}

Status check_dialer_proof(std::string_view secret, const Hello& hello, const HelloReply& reply,
                          const AuthProof& answer) {
  if (answer.proof.empty()) {
    return Status::failed_precondition(
        "authentication failed: the connecting side gave up" +
        (answer.message.empty() ? std::string() : " (" + answer.message + ")"));
  }
  if (!proof_matches(secret, Prover::kDialer, hello.role, reply.cluster_id, hello.nonce,
                     reply.nonce, answer.proof)) {
    return Status::failed_precondition(
        "authentication failed: wrong proof of the shared secret (different --secret-file?)");
  }
  return Status();
}

Status check_auth_frame(std::string_view secret, const Hello& hello, const HelloReply& reply,
                        const Envelope& frame) {
  if (frame.kind != FrameKind::kAuth) {
    return Status::failed_precondition(
        "authentication failed: expected the proof of the shared secret, got another frame");
  }
  Result<AuthProof> answer = decode_auth_proof(*frame.body);
  return answer.ok() ? check_dialer_proof(secret, hello, reply, *answer) : answer.status();
}

Status check_member_proof(std::string_view secret, Role role, std::string_view dialer_nonce,
                          const HelloReply& reply, AuthProof* answer) {
  Status bad;
  if (reply.proof.empty()) {
    bad = Status::failed_precondition(
        "authentication failed: the member sent no proof of the shared secret (it has no "
        "--secret-file, or predates authentication)");
  } else if (!proof_matches(secret, Prover::kMember, role, reply.cluster_id, dialer_nonce,
                            reply.nonce, reply.proof)) {
    bad = Status::failed_precondition(
        "authentication failed: the member's proof of the shared secret is wrong (different "
        "--secret-file?)");
  }
  if (!bad.ok()) {
    *answer =
        AuthProof{.proof = "", .message = "the member's proof did not match this side's secret"};
    return bad;
  }
  *answer = AuthProof{.proof = make_proof(secret, Prover::kDialer, role, reply.cluster_id,
                                          dialer_nonce, reply.nonce),
                      .message = ""};
  return Status();
}

}  // namespace kvc::wire
