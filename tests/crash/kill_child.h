// Runs a child process until a random moment, then SIGKILLs it: the
// harness both crash tests share.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <random>
#include <string>
#include <thread>

namespace confman::testing {

// Forks a child running `child(report_fd)`, which must write one byte to
// report_fd once it is ready and then report progress there (records of at
// most PIPE_BUF bytes, so a kill never splits one). Kills it 0-30 ms after
// it is ready and returns everything it reported after the ready byte.
// The caller must hold no LMDB environment open: none may cross fork().
inline std::string RunUntilKilled(std::mt19937_64& rng,
                                  const std::function<void(int)>& child) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    child(fds[1]);
    _exit(9);  // Children loop until killed.
  }
  close(fds[1]);
  char ready;
  REQUIRE(read(fds[0], &ready, 1) == 1);
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30000));
  REQUIRE(kill(pid, SIGKILL) == 0);
  int wstatus = 0;
  REQUIRE(waitpid(pid, &wstatus, 0) == pid);
  REQUIRE(WIFSIGNALED(wstatus));  // Not an early exit from a failed write.
  std::string reported;
  char chunk[4096];
  ssize_t n;
  while ((n = read(fds[0], chunk, sizeof chunk)) > 0) reported.append(chunk, n);
  close(fds[0]);
  return reported;
}

}  // namespace confman::testing
