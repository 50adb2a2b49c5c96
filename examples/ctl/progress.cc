// Terminal progress bar; see progress.h.
#include "progress.h"

#include <unistd.h>

#include <cstdio>

#include "ctl.h"

namespace confmanctl {

bool StderrIsTerminal() { return isatty(STDERR_FILENO) == 1; }

ProgressBar::ProgressBar(std::string label, uint64_t total)
    : label_(std::move(label)), total_(total), enabled_(StderrIsTerminal()),
      start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() {
  if (drawn_ && !finished_) std::fputs("\n", stderr);
}

void ProgressBar::Update(uint64_t done, const std::string& note, bool force) {
  last_done_ = done;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (!force && drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  drawn_ = true;
  constexpr int kWidth = 30;
  std::string bar;
  if (total_ > 0) {
    uint64_t capped = done > total_ ? total_ : done;
    int filled = static_cast<int>(capped * kWidth / total_);
    bar = "[" + std::string(filled, '#') + std::string(kWidth - filled, ' ') + "] ";
    std::fprintf(stderr, "\r\033[K%s %s%llu/%llu (%3d%%)", label_.c_str(), bar.c_str(),
                 static_cast<unsigned long long>(done), static_cast<unsigned long long>(total_),
                 static_cast<int>(capped * 100 / total_));
  } else {
    std::fprintf(stderr, "\r\033[K%s %llu", label_.c_str(), static_cast<unsigned long long>(done));
  }
  double secs = std::chrono::duration<double>(now - start_).count();
  std::fprintf(stderr, " %.1fs", secs);
  if (!note.empty()) std::fprintf(stderr, " %s", note.c_str());
  std::fflush(stderr);
}

void ProgressBar::Finish(const std::string& note) {
  if (!enabled_ || finished_) return;
  Update(last_done_, note, true);
  std::fputs("\n", stderr);
  finished_ = true;
}

}  // namespace confmanctl
