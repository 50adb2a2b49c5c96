// Mutual authentication of a new member-to-member connection.
//
// Both sides send a Hello (protocol version, cluster id, member id, a fresh
// random nonce, the channel), then a Proof: HMAC-SHA256 keyed with the
// cluster's shared secret over a transcript of both Hellos. Each side's
// transcript puts its own identity and nonce first, so a proof cannot be
// reflected back at its author, and the fresh nonce from the other side
// means a recorded proof cannot be replayed on a new connection.
#pragma once

#include <string>

#include "confman/raft/types.h"
#include "wire_codec.h"

namespace confman::wire {

// kNonceBytes from OpenSSL's CSPRNG.
std::string MakeNonce();

// The proof that the author of `mine` knows `secret`, answering `theirs`.
std::string ComputeProof(const std::string& secret, const Hello& mine,
                         const Hello& theirs);

// Constant-time comparison of a received proof with the expected one.
bool ProofMatches(const std::string& expected, const std::string& received);

}  // namespace confman::wire
