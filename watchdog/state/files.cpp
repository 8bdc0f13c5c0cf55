// What lastgood keeps under state_dir: private files and folders, the lock, the crash hook.
#include "watchdog/state/ledger.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <spdlog/spdlog.h>

namespace lastgood::watchdog {

std::string write_private(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return "cannot create " + path + ": " + std::strerror(errno);
  ::fchmod(fd, 0600);  // an existing file keeps its mode through O_TRUNC: made private too
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      return "cannot write " + path + ": " + why;
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) return "cannot write " + path + ": " + std::strerror(errno);
  return "";
}

std::string make_private_dir(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) {
    struct stat st{};
    if (::stat(dir.c_str(), &st) == 0 && (st.st_mode & 0077))
      spdlog::warn("{} may be read by other users (mode {:o}): lastgood keeps its ledger and incidents there; chmod 700 it", dir, st.st_mode & 0777);
    return "";
  }
  const auto parent = std::filesystem::path(dir).parent_path();
  if (!parent.empty() && parent != dir) std::filesystem::create_directories(parent, ec);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return "cannot create " + dir + ": " + std::strerror(errno);
  ::chmod(dir.c_str(), 0700);
  return "";
}

void test_crash_point(const char* point) {
  const char* c = std::getenv("LASTGOOD_TEST_CRASH_AFTER");
  if (c && std::strcmp(c, point) == 0) {
    spdlog::default_logger()->flush();
    ::_exit(99);
  }
}

StateLock::StateLock(const std::string& state_dir) {
  const std::string path = state_dir + "/lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ >= 0) ::fchmod(fd_, 0600);
  if (fd_ < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      throw std::runtime_error("state_dir " + state_dir + " is in use by another lastgood (pid " + (pid.empty() ? "unknown" : pid) +
                               "), which holds " + path + ": two processes on one ledger would interleave their entries");
    throw std::runtime_error("cannot lock " + path + ": " + std::strerror(err));
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size()))
    spdlog::warn("state_dir lock {}: could not write our pid: {}", path, std::strerror(errno));
}

StateLock::~StateLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace lastgood::watchdog
