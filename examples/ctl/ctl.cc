// Helpers every command shares: the lazily created client, the namespace
// rule of -n, URL encoding and base64.
#include "ctl.h"

#include <array>
#include <cstdio>
#include <ctime>

#include "http_client.h"

namespace confmanctl {

Context::Context() = default;
Context::~Context() = default;

Client& Context::client() {
  if (!client_) client_ = std::make_unique<Client>(opts);
  return *client_;
}

std::string TakeNamespace(Context& ctx, std::vector<std::string>& args) {
  if (!ctx.opts.ns.empty()) return ctx.opts.ns;
  if (args.empty()) {
    throw UsageError("no namespace: give NS as the first argument, or set -n/--namespace (or CONFMAN_NAMESPACE)");
  }
  std::string ns = args.front();
  args.erase(args.begin());
  if (ns.empty()) throw UsageError("the namespace must not be empty");
  return ns;
}

namespace {

std::string Encode(const std::string& s, bool keep_slash) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '_' || c == '.' || c == '~' || (keep_slash && c == '/');
    if (plain) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

std::string EncodeSegment(const std::string& s) { return Encode(s, false); }
std::string EncodeKeyPath(const std::string& s) {
  // "." and ".." segments would be normalised away by some HTTP stacks.
  std::string out = Encode(s, true);
  std::string fixed;
  size_t start = 0;
  while (start <= out.size()) {
    size_t end = out.find('/', start);
    if (end == std::string::npos) end = out.size();
    std::string seg = out.substr(start, end - start);
    if (seg == ".") seg = "%2E";
    if (seg == "..") seg = "%2E%2E";
    fixed += seg;
    if (end < out.size()) fixed += '/';
    start = end + 1;
  }
  return fixed;
}
std::string EncodeQuery(const std::string& s) { return Encode(s, false); }

std::string KvTarget(const std::string& ns, const std::string& key) {
  return "/v1/ns/" + EncodeSegment(ns) + "/kv/" + EncodeKeyPath(key);
}

std::string ConsistencyParam(const Context& ctx, char sep) {
  if (ctx.opts.consistency.empty()) return "";
  return std::string(1, sep) + "consistency=" + ctx.opts.consistency;
}

std::string ReadStdin() {
  std::string data;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) data.append(buf, n);
  if (std::ferror(stdin)) throw CtlError(kExitError, "stdin", "cannot read the value from stdin");
  return data;
}

std::string FormatSeconds(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%gs", seconds);
  return buf;
}

std::string FormatTimeMicros(int64_t micros) {
  std::time_t secs = static_cast<std::time_t>(micros / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[80];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>((micros / 1000) % 1000));
  return out;
}

std::string Base64Encode(const std::string& in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out.push_back(kB64[(v >> 18) & 63]);
    out.push_back(kB64[(v >> 12) & 63]);
    out.push_back(kB64[(v >> 6) & 63]);
    out.push_back(kB64[v & 63]);
  }
  if (i < in.size()) {
    uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out.push_back(kB64[(v >> 18) & 63]);
    out.push_back(kB64[(v >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? kB64[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::string Base64Decode(const std::string& in) {
  std::array<int, 256> table;
  table.fill(-1);
  for (int i = 0; i < 64; ++i) table[static_cast<unsigned char>(kB64[i])] = i;
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    if (c == '=') break;
    int v = table[c];
    if (v < 0) {
      if (c == '\n' || c == '\r' || c == ' ') continue;
      throw CtlError(kExitError, "bad_base64", "the server sent value_b64 that is not base64");
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

}  // namespace confmanctl
