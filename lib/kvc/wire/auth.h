// Shared-secret authentication of the connection handshake (kvc(7), "SECURITY"; the frames are
// in kvc-node(1), "WIRE PROTOCOL"). When a secret is configured, the connecting side (client,
// peer, or a member asking to join) puts a fresh random nonce in its Hello; the member answers
// with its own nonce and a proof in the HelloReply; the connecting side checks that proof and
// sends its own in an Auth frame, after which it may pipeline requests at once; the member
// handles nothing from the connection before that proof checks out. A proof is
//   HMAC-SHA-256(secret, "kvc-auth-v1" | prover | role | cluster id | dialer nonce | member nonce)
// so it proves knowledge of the secret without sending it, cannot be replayed (the other side's
// nonce is fresh) and cannot be reflected (the prover label differs by direction). It
// authenticates the start of a connection only: the bytes that follow are neither encrypted nor
// MACed, so an attacker who can rewrite TCP streams on the path is not kept out.
// Pure functions apart from make_nonce (getrandom) and load_secret_file; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kvc/common/status.h"
#include "kvc/wire/messages.h"

namespace kvc::wire {

inline constexpr std::size_t kNonceBytes = 32;
inline constexpr std::size_t kProofBytes = 32;
inline constexpr std::size_t kMaxSecretBytes = 64u << 10;

// Reads a secret file: refused when it is not a regular file, is accessible by group or others
// (like ssh keys: chmod 600), is empty, or is larger than kMaxSecretBytes. One trailing newline
// ("\n" or "\r\n") is stripped. Every error names the file.
Result<std::string> load_secret_file(const std::string& path);

// kNonceBytes from the kernel's random source (getrandom).
Result<std::string> make_nonce();

// Who proves: the member that accepted the connection, or the side that dialled it.
enum class Prover : std::uint8_t { kMember = 1, kDialer = 2 };

// The proof `prover` sends on a connection of `role` to/from cluster `cluster_id`.
std::string make_proof(std::string_view secret, Prover prover, Role role, std::uint64_t cluster_id,
                       std::string_view dialer_nonce, std::string_view member_nonce);
// Checks a received proof in constant time; the nonces must be kNonceBytes long and differ.
bool proof_matches(std::string_view secret, Prover prover, Role role, std::uint64_t cluster_id,
                   std::string_view dialer_nonce, std::string_view member_nonce,
                   std::string_view proof);

// Member side, on a Hello: whether both sides agree on having a secret. Not ok
// (kFailedPrecondition, with a message for the other side) when one side has a secret and the other
// does not; kCorruption for a nonce of the wrong size.
Status check_hello_auth(bool member_has_secret, const Hello& hello);

// Member side: fills reply->nonce (fresh) and reply->proof for the hello. reply->cluster_id
// must already be set (the proof covers it).
Status answer_challenge(std::string_view secret, const Hello& hello, HelloReply* reply);

// Member side: checks the dialer's Auth frame against the hello and the reply sent.
Status check_dialer_proof(std::string_view secret, const Hello& hello, const HelloReply& reply,
                          const AuthProof& answer);

// Member side, the whole auth step of a handshake (client and peer ports alike): the frame
// that follows the challenge must be an Auth frame whose proof checks out.
Status check_auth_frame(std::string_view secret, const Hello& hello, const HelloReply& reply,
                        const Envelope& frame);

// Dialer side: checks an ok HelloReply's proof for the hello sent (with `dialer_nonce`), and on
// success fills *answer with the dialer's proof. On failure *answer is the give-up frame (empty
// proof, a message for the member's log) and the Status says why, for the dialer's caller.
Status check_member_proof(std::string_view secret, Role role, std::string_view dialer_nonce,
                          const HelloReply& reply, AuthProof* answer);

}  // namespace kvc::wire
