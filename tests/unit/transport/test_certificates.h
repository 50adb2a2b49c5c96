// Throwaway PKI for TLS tests: a CA and member certificates, written as PEM
// files into a fresh directory under the system temp dir.
#pragma once

#include <string>

#include "confman/transport/tcp.h"

namespace confman::testing {

struct TestPki {
  std::string directory;
  std::string ca_file;
  // Member certificates (and keys) signed by the CA.
  TcpTransportOptions::TlsFiles member;
  // A certificate and key signed by a different CA than `ca_file`.
  TcpTransportOptions::TlsFiles stranger;
};

// Created once per process; aborts the test run if OpenSSL fails.
const TestPki& SharedTestPki();

}  // namespace confman::testing
