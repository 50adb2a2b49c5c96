// Output formats of confmanctl; see output.h.
#include "output.h"

#include <algorithm>
#include <cstdio>
#include <iostream>

namespace confmanctl {

Format ParseFormat(const std::string& name) {
  if (name == "simple") return Format::kSimple;
  if (name == "json") return Format::kJson;
  if (name == "table") return Format::kTable;
  throw UsageError("--write-out must be simple, json or table, not '" + name + "'");
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> width(header.size(), 0);
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  auto rule = [&] {
    out << '+';
    for (size_t w : width) out << std::string(w + 2, '-') << '+';
    out << '\n';
  };
  // A control character in a value would break the row apart.
  auto visible = [](const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
      if (c < 0x20 || c == 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
      } else {
        out.push_back(static_cast<char>(c));
      }
    }
    return out;
  };
  std::vector<std::vector<std::string>> shown;
  for (const auto& row : rows) {
    shown.emplace_back();
    for (const auto& cell : row) shown.back().push_back(visible(cell));
  }
  for (const auto& row : shown) {
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    out << '|';
    for (size_t c = 0; c < width.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : std::string();
      out << ' ' << cell << std::string(width[c] - cell.size(), ' ') << " |";
    }
    out << '\n';
  };
  rule();
  line(header);
  rule();
  for (const auto& row : shown) line(row);
  rule();
}

std::string Cell(const nlohmann::json& value) {
  if (value.is_null()) return "";
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

void PrintJsonLine(const nlohmann::json& value) {
  // Replacing invalid UTF-8 keeps a binary value from aborting the output.
  std::cout << value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

void PrintJsonLine(const nlohmann::ordered_json& value) {
  std::cout << value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

void ReportError(Format format, const CtlError& error) {
  std::cout.flush();
  std::cerr << "Error: " << error.what() << '\n';
  if (format == Format::kJson) {
    nlohmann::json j = {{"error",
                         {{"code", error.code()}, {"message", error.what()}, {"exit_code", error.exit_code()}}}};
    std::cerr << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  }
}

}  // namespace confmanctl
