// A server (or any program) run as a child process by a test: spawned with
// its stdout and stderr in a log file, polled, waited for, killed and reaped
// when the object goes.
#ifndef MTLA_TESTS_COMMON_CHILD_SERVER_H_
#define MTLA_TESTS_COMMON_CHILD_SERVER_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/common/grpc_wait.h"

extern char** environ;

namespace mtla::test_support {

class ChildServer {
 public:
  ~ChildServer() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (!log_.empty()) std::filesystem::remove(log_);
  }

  bool Spawn(const std::vector<std::string>& args, const std::string& log) {
    log_ = log;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const int err = posix_spawn(&pid_, args[0].c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (err != 0) pid_ = 0;
    return err == 0;
  }

  // Exit status if the child has exited (reaps it), nullopt while it runs.
  std::optional<int> Poll() {
    if (pid_ <= 0) return exit_status_;
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = 0;
      exit_status_ = status;
    }
    return exit_status_;
  }

  // Waits at most `timeout_seconds` for the exit; kills it with SIGKILL after.
  std::optional<int> WaitExit(double timeout_seconds) {
    WaitFor([&] { return Poll().has_value(); }, timeout_seconds, 10);
    if (!exit_status_.has_value() && pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = 0;
    }
    return exit_status_;
  }

  pid_t pid() const { return pid_; }
  std::string Log() const {
    std::ifstream file(log_);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }

 private:
  pid_t pid_ = 0;
  std::optional<int> exit_status_;
  std::string log_;
};

}  // namespace mtla::test_support

#endif  // MTLA_TESTS_COMMON_CHILD_SERVER_H_
