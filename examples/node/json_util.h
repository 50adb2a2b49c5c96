// Small text helpers shared by the server's routes: JSON output that never
// throws, UTF-8 checks, base64, percent-decoding and strict integer parsing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace confman::server {

using Json = nlohmann::json;
// Keeps keys in insertion order: stream lines read "type" first.
using OrderedJson = nlohmann::ordered_json;

// Serialises without throwing: keys and values are arbitrary bytes, so
// invalid UTF-8 is replaced rather than allowed to abort a response.
std::string DumpJson(const Json& value);
std::string DumpJson(const OrderedJson& value);

// Parses a request body; nullopt (and `error` set) when it is not JSON.
std::optional<Json> ParseJson(std::string_view text, std::string* error);

bool IsValidUtf8(std::string_view bytes);

std::string Base64Encode(std::string_view bytes);
// URL-safe alphabet without padding: opaque page tokens.
std::string Base64UrlEncode(std::string_view bytes);
std::optional<std::string> Base64UrlDecode(std::string_view text);

// %XX decoding; nullopt for a malformed escape. '+' stays '+': paths, and
// query values written by clients that escape spaces as %20.
std::optional<std::string> PercentDecode(std::string_view text);

// Decimal uint64 without sign, spaces or overflow.
std::optional<uint64_t> ParseUint64(std::string_view text);

}  // namespace confman::server
