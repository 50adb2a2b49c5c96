// The proof half of the connection handshake (see handshake.h): nonces and
// the HMAC-SHA256 transcript both sides sign. The exchange that carries
// these over a connection is in connection_handshake.cc; this file stays
// free of Asio so the fuzz target can compile it.
#include "handshake.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace confman::wire {
namespace {

// Length-prefixes every field so no two different transcripts serialize to
// the same bytes.
void AppendField(std::string& out, absl::string_view field) {
  absl::StrAppend(&out, field.size(), ":", field, ";");
}

void AppendHello(std::string& out, const Hello& hello) {
  AppendField(out, hello.cluster_id);
  AppendField(out, absl::StrCat(hello.member_id));
  AppendField(out, ChannelName(hello.channel));
  AppendField(out, hello.nonce);
}

}  // namespace

std::string MakeNonce() {
  std::string nonce(kNonceBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()),
                 static_cast<int>(nonce.size())) != 1) {
    // Without randomness the handshake cannot be secure; continuing would
    // silently accept replayed proofs.
    std::fprintf(stderr, "confman transport: RAND_bytes failed\n");
    std::abort();
  }
  return nonce;
}

std::string ComputeProof(const std::string& secret, const Hello& mine,
                         const Hello& theirs) {
  std::string transcript =
      absl::StrCat("confman-handshake-v", kProtocolVersion, ";");
  AppendHello(transcript, mine);
  AppendHello(transcript, theirs);
  std::string mac(EVP_MAX_MD_SIZE, '\0');
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(transcript.data()),
       transcript.size(), reinterpret_cast<unsigned char*>(mac.data()),
       &mac_len);
  mac.resize(mac_len);
  return mac;
}

bool ProofMatches(const std::string& expected, const std::string& received) {
  return expected.size() == received.size() &&
         CRYPTO_memcmp(expected.data(), received.data(), expected.size()) == 0;
}

}  // namespace confman::wire
