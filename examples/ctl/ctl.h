// Shared vocabulary of confmanctl: exit codes, the error type every command
// throws, the global options and the per-invocation context the commands
// work in.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace confmanctl {

// Documented in --help and README.md; scripts branch on these.
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,
  kExitUsage = 2,
  kExitRevisionMismatch = 3,
  kExitNotFound = 4,
  kExitUnavailable = 5,
  kExitOutcomeUnknown = 6,
};

// `code` mirrors the server's error codes where the error came from one, so
// json output on stderr carries the same vocabulary as the API.
class CtlError : public std::runtime_error {
 public:
  CtlError(int exit_code, std::string code, const std::string& message)
      : std::runtime_error(message), exit_code_(exit_code), code_(std::move(code)) {}
  int exit_code() const { return exit_code_; }
  const std::string& code() const { return code_; }

 private:
  int exit_code_;
  std::string code_;
};

inline CtlError UsageError(const std::string& message) {
  return CtlError(kExitUsage, "usage", message);
}

enum class Format { kSimple, kJson, kTable };

struct GlobalOptions {
  std::string endpoints = "http://127.0.0.1:7480";
  std::string ns;  // -n: when set, commands take their namespace from here
  std::string write_out = "simple";
  std::string consistency;  // empty: the server's default (linearizable)
  double timeout_s = 5.0;
  std::string token_file;
  std::string cacert;
  bool insecure = false;
};

class Client;

// Everything a command needs; the client is created on first use so that
// usage errors never touch the network.
struct Context {
  GlobalOptions opts;
  Format format = Format::kSimple;
  std::function<int()> action;  // the chosen command, run after parsing

  Client& client();
  ~Context();
  Context();

 private:
  std::unique_ptr<Client> client_;
};

// Splits the positional words of a command that names a namespace: with
// -n the namespace comes from there and every word is an argument, without
// it the first word is the namespace.
std::string TakeNamespace(Context& ctx, std::vector<std::string>& args);

// Percent-encodes for a URL path: a namespace is one segment (so '/' is
// encoded), a key keeps its '/' because the server takes the rest of the path.
std::string EncodeSegment(const std::string& s);
std::string EncodeKeyPath(const std::string& s);
std::string EncodeQuery(const std::string& s);

// "/v1/ns/{ns}/kv/{key}" with both parts encoded.
std::string KvTarget(const std::string& ns, const std::string& key);

// The consistency the user asked for as a query parameter ("" when none,
// so the server's default applies); `sep` is '?' or '&'.
std::string ConsistencyParam(const Context& ctx, char sep);

// Reads all of stdin as bytes.
std::string ReadStdin();

// Microseconds since the epoch as "2025-01-02T03:04:05.678Z".
std::string FormatTimeMicros(int64_t micros);

// Seconds for messages: "1.5s", not std::to_string's "1.500000".
std::string FormatSeconds(double seconds);

std::string Base64Encode(const std::string& in);
std::string Base64Decode(const std::string& in);

bool StderrIsTerminal();

// Command registration, one per source file.
void AddKvCommands(CLI::App& app, Context& ctx);
void AddWatchCommand(CLI::App& app, Context& ctx, std::vector<std::string>* exec_argv);
void AddClusterCommands(CLI::App& app, Context& ctx);
void AddImportExportCommands(CLI::App& app, Context& ctx);
void AddBenchCommand(CLI::App& app, Context& ctx);

}  // namespace confmanctl
