#include "actions/local_symlink.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace lastgood::actions {

namespace fs = std::filesystem;
namespace asio = boost::asio;
using SysClock = std::chrono::system_clock;

namespace {

std::chrono::system_clock::time_point to_tp(const struct timespec& ts) {
  return SysClock::time_point(std::chrono::duration_cast<SysClock::duration>(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

class LocalSymlink final : public Action {
 public:
  LocalSymlink(std::string service, const config::Deployment& d) : service_(std::move(service)), root_(d.spec.at("path").get<std::string>()) {}
  const char* kind() const override { return "local_symlink"; }

  asio::awaitable<Observation> observe() override { co_return observe_now(); }

  Plan plan(const std::string& from, const std::string& to, const Context& ctx) const override {
    Plan p{from, to, ctx, {}};
    p.steps.push_back("check that " + (root_ / "releases" / to).string() + " is a directory");
    p.steps.push_back("symlink " + tmp_name().string() + " -> releases/" + to);
    p.steps.push_back("rename " + tmp_name().string() + " over " + (root_ / "current").string() + " (atomic)");
    p.steps.push_back("fsync " + root_.string());
    return p;
  }

  asio::awaitable<Outcome> execute(const Plan& p) override { co_return switch_to(p.to); }

 private:
  fs::path tmp_name() const { return root_ / ("current.tmp." + std::to_string(::getpid())); }

  Observation observe_now() const {
    Observation o;
    std::error_code ec;
    const fs::path cur = root_ / "current";
    fs::path target = fs::read_symlink(cur, ec);
    if (ec) {
      o.error = "cannot read the symlink " + cur.string() + ": " + ec.message();
      return o;
    }
    fs::path rel = target.is_absolute() ? target.lexically_relative(root_) : target.lexically_normal();
    auto it = rel.begin();
    if (rel.empty() || it == rel.end() || *it != "releases" || std::distance(rel.begin(), rel.end()) != 2) {
      o.error = cur.string() + " points to " + target.string() + ", not to a folder in " + (root_ / "releases").string();
      return o;
    }
    ObservedRelease live{rel.filename().string(), std::nullopt, false};
    struct stat st{};
    if (::lstat(cur.c_str(), &st) == 0) live.deployed_at = to_tp(st.st_mtim);  // the symlink's own mtime: when it was switched
    live.migration = fs::exists(root_ / "releases" / live.id / ".lastgood-migration", ec);
    o.live = live;
    for (const auto& e : fs::directory_iterator(root_ / "releases", ec)) {
      if (!e.is_directory(ec)) continue;
      ObservedRelease r{e.path().filename().string(), std::nullopt, false};
      if (::stat(e.path().c_str(), &st) == 0) r.deployed_at = to_tp(st.st_mtim);
      o.history.push_back(r);
    }
    std::sort(o.history.begin(), o.history.end(), [](const auto& a, const auto& b) { return a.deployed_at < b.deployed_at; });
    return o;
  }

  Outcome switch_to(const std::string& to) const {
    Outcome out;
    if (!valid_release_name(to)) {
      out.error = "refused: \"" + to + "\" is not a valid release name";
      return out;
    }
    std::error_code ec;
    const fs::path dir = root_ / "releases" / to;
    if (!fs::is_directory(dir, ec)) {
      out.error = "refused: " + dir.string() + " is not a directory";
      return out;
    }
    const fs::path tmp = tmp_name();
    fs::remove(tmp, ec);
    if (::symlink(("releases/" + to).c_str(), tmp.c_str()) != 0) {
      out.error = "symlink " + tmp.string() + ": " + std::strerror(errno);
      return out;
    }
    if (::rename(tmp.c_str(), (root_ / "current").c_str()) != 0) {
      out.error = "rename over " + (root_ / "current").string() + ": " + std::strerror(errno);
      fs::remove(tmp, ec);
      return out;
    }
    int dfd = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
    out.ok = true;
    out.output = "current -> releases/" + to;
    return out;
  }

  std::string service_;
  fs::path root_;
};

}  // namespace

std::unique_ptr<Action> make_local_symlink(asio::any_io_executor, const std::string& service, const config::Deployment& d) {
  return std::make_unique<LocalSymlink>(service, d);
}

}  // namespace lastgood::actions
