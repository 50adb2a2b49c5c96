// How results and errors are written: `simple` (lines for people and
// shell scripts), `json` (one compact JSON document per result on stdout),
// `table` (aligned columns). Errors always go to stderr.
#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ctl.h"

namespace confmanctl {

Format ParseFormat(const std::string& name);

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  void Print(std::ostream& out) const;
};

// A JSON scalar as a person would read it: strings without quotes, null
// as an empty cell.
std::string Cell(const nlohmann::json& value);

void PrintJsonLine(const nlohmann::json& value);
void PrintJsonLine(const nlohmann::ordered_json& value);

// Writes the error to stderr: "Error: ..." always, and in json mode also
// {"error": {"code", "message", "exit_code"}} on its own line.
void ReportError(Format format, const CtlError& error);

}  // namespace confmanctl
