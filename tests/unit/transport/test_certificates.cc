#include "test_certificates.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

namespace confman::testing {
namespace {

struct KeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct CertDeleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyDeleter>;
using Cert = std::unique_ptr<X509, CertDeleter>;

void Require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "test PKI: %s failed\n", what);
  std::abort();
}

// A certificate for `key` named `common_name`, signed by `issuer_key` under
// `issuer` (self-signed when issuer is null).
Cert MakeCertificate(EVP_PKEY* key, const char* common_name, bool is_ca,
                     X509* issuer, EVP_PKEY* issuer_key, long serial) {
  Cert cert(X509_new());
  Require(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7 * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(
      name, "CN", MBSTRING_ASC,
      reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
  X509_set_issuer_name(cert.get(),
                       issuer ? X509_get_subject_name(issuer) : name);
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, issuer ? issuer : cert.get(), cert.get(), nullptr,
                 nullptr, 0);
  X509_EXTENSION* constraints =
      X509V3_EXT_conf_nid(nullptr, &context, NID_basic_constraints,
                          is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  Require(constraints != nullptr, "basicConstraints");
  X509_add_ext(cert.get(), constraints, -1);
  X509_EXTENSION_free(constraints);
  Require(X509_sign(cert.get(), issuer_key, EVP_sha256()) > 0, "X509_sign");
  return cert;
}

void WriteCertificate(const std::string& path, X509* cert) {
  FILE* file = std::fopen(path.c_str(), "w");
  Require(file != nullptr, "fopen");
  Require(PEM_write_X509(file, cert) == 1, "PEM_write_X509");
  std::fclose(file);
}

void WriteKey(const std::string& path, EVP_PKEY* key) {
  FILE* file = std::fopen(path.c_str(), "w");
  Require(file != nullptr, "fopen");
  Require(PEM_write_PrivateKey(file, key, nullptr, nullptr, 0, nullptr,
                               nullptr) == 1,
          "PEM_write_PrivateKey");
  std::fclose(file);
}

Key NewKey() {
  Key key(EVP_EC_gen("P-256"));
  Require(key != nullptr, "EVP_EC_gen");
  return key;
}

TestPki CreatePki() {
  TestPki pki;
  std::string pattern =
      (std::filesystem::temp_directory_path() / "confman-pki-XXXXXX").string();
  Require(mkdtemp(pattern.data()) != nullptr, "mkdtemp");
  pki.directory = pattern;
  const std::string dir = pki.directory + "/";

  Key ca_key = NewKey();
  Cert ca = MakeCertificate(ca_key.get(), "confman test CA", true, nullptr,
                            ca_key.get(), 1);
  Key member_key = NewKey();
  Cert member = MakeCertificate(member_key.get(), "confman member", false,
                                ca.get(), ca_key.get(), 2);
  Key other_ca_key = NewKey();
  Cert other_ca = MakeCertificate(other_ca_key.get(), "another CA", true,
                                  nullptr, other_ca_key.get(), 3);
  Key stranger_key = NewKey();
  Cert stranger = MakeCertificate(stranger_key.get(), "stranger", false,
                                  other_ca.get(), other_ca_key.get(), 4);

  pki.ca_file = dir + "ca.pem";
  WriteCertificate(pki.ca_file, ca.get());
  pki.member = {.ca_file = pki.ca_file,
                .certificate_file = dir + "member.pem",
                .private_key_file = dir + "member.key"};
  WriteCertificate(pki.member.certificate_file, member.get());
  WriteKey(pki.member.private_key_file, member_key.get());
  pki.stranger = {.ca_file = pki.ca_file,
                  .certificate_file = dir + "stranger.pem",
                  .private_key_file = dir + "stranger.key"};
  WriteCertificate(pki.stranger.certificate_file, stranger.get());
  WriteKey(pki.stranger.private_key_file, stranger_key.get());
  return pki;
}

}  // namespace

const TestPki& SharedTestPki() {
  static const TestPki* pki = new TestPki(CreatePki());
  return *pki;
}

}  // namespace confman::testing
