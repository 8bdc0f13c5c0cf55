#include "actions/local_symlink.hpp"

#include "config/reader.hpp"

#include "actions/process.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

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
  LocalSymlink(asio::any_io_executor ex, std::string service, const config::Deployment& d)
      : ex_(std::move(ex)), service_(std::move(service)), root_(config::spec_as<LocalSymlinkSpec>(d.spec).path),
        steps_(config::spec_as<LocalSymlinkSpec>(d.spec).steps) {
    if (const auto& t = config::spec_as<LocalSymlinkSpec>(d.spec).timeout) timeout_ = *t;
  }
  const char* kind() const override { return "local_symlink"; }

  asio::awaitable<Observation> observe() override { co_return observe_now(); }

  Plan plan(const std::string& from, const std::string& to, const Context& ctx) const override {
    Plan p{from, to, ctx, {}};
    p.steps.push_back("flock " + root_.string() + " and check that current still points to releases/" + from);
    for (const auto& st : steps_.before) p.steps.push_back("before_switch: " + st.command_line(p));
    p.steps.push_back("check that " + (root_ / "releases" / to).string() + " is a directory");
    p.steps.push_back("symlink " + tmp_name().string() + " -> releases/" + to);
    p.steps.push_back("rename " + tmp_name().string() + " over " + (root_ / "current").string() + " (atomic)");
    p.steps.push_back("fsync " + root_.string());
    for (const auto& st : steps_.after) p.steps.push_back("after_switch: " + st.command_line(p));
    if (!steps_.after.empty() && steps_.restore_on_failure) p.steps.push_back("if an after_switch step fails: current back to releases/" + from);
    return p;
  }

  // Under an exclusive flock on the deployment folder (a deploy script that takes the same lock,
  // `flock /srv/app ...`, cannot switch in between): current must still point to plan.from.
  asio::awaitable<Outcome> execute(const Plan& p) override {
    struct Fd {
      int fd;
      ~Fd() {
        if (fd >= 0) ::close(fd);  // releases the lock
      }
    } dir{::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (dir.fd < 0) {
      Outcome out;
      out.error = "open " + root_.string() + ": " + std::strerror(errno);
      co_return out;
    }
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (::flock(dir.fd, LOCK_EX | LOCK_NB) != 0) {
      Outcome out;
      if (errno != EWOULDBLOCK && errno != EINTR) {
        out.error = "flock " + root_.string() + ": " + std::strerror(errno);
        co_return out;
      }
      if (std::chrono::steady_clock::now() >= give_up) {
        out.error = "refused: " + root_.string() + " stayed locked by another process (a deploy?) for 10 s; nothing was changed";
        co_return out;
      }
      asio::steady_timer t(ex_, std::chrono::milliseconds(20));  // never block the loop on the lock
      co_await t.async_wait(asio::use_awaitable);
    }
    const Observation now = read_live();
    if (!now.live || now.live->id != p.from) co_return refused_not_from(p, now.live ? now.live->id : "");
    if (p.fence != 0) {
      if (auto refused = fence(p.fence, dir.fd)) {
        Outcome out;
        out.error = *refused;
        co_return out;
      }
    }
    if (steps_.empty()) co_return switch_to(p.to, dir.fd);
    co_return co_await switch_with_steps(p, dir.fd);
  }

  std::chrono::milliseconds step_timeout() const override {
    return timeout_ * static_cast<int>(steps_.before.size() + steps_.after.size()) + std::chrono::seconds(30);
  }

 private:
  fs::path tmp_name() const { return root_ / ("current.tmp." + std::to_string(::getpid())); }

  // The live release only (current's target and switch time, the migration marker).
  Observation read_live() const {
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
    return o;
  }

  Observation observe_now() const {
    Observation o = read_live();
    if (!o.live) return o;
    std::error_code ec;
    struct stat st{};
    for (const auto& e : fs::directory_iterator(root_ / "releases", ec)) {
      if (!e.is_directory(ec)) continue;
      ObservedRelease r{e.path().filename().string(), std::nullopt, false};
      if (::stat(e.path().c_str(), &st) == 0) r.deployed_at = to_tp(st.st_mtim);
      o.history.push_back(r);
    }
    std::sort(o.history.begin(), o.history.end(), [](const auto& a, const auto& b) { return a.deployed_at < b.deployed_at; });
    return o;
  }

  // Fencing (ha.md), under the lock: the token stored beside `current` must be lower than this
  // action's, and this action's is stored (durably) before the switch. A replica that lost the
  // service and still runs is refused by the target itself. The error, or nullopt.
  std::optional<std::string> fence(std::int64_t token, int dfd) const {
    const fs::path file = root_ / ".lastgood-fence";
    std::int64_t stored = 0;
    if (std::FILE* f = std::fopen(file.c_str(), "re")) {
      char buf[32] = {};
      const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
      std::fclose(f);
      const auto [end, ec] = std::from_chars(buf, buf + n, stored);
      if (ec != std::errc() || stored < 0 || (end != buf + n && *end != '\n'))
        return "refused: " + file.string() + " does not hold a fencing token; nothing was changed (remove it only if no other replica acts)";
    } else if (errno != ENOENT) {
      return "refused: cannot read " + file.string() + ": " + std::strerror(errno) + "; nothing was changed";
    }
    if (stored >= token)
      return "refused by the target: " + file.string() + " holds token " + std::to_string(stored) + ", not lower than this action's " +
             std::to_string(token) + " (a newer owner acted); nothing was changed";
    const fs::path tmp = root_ / (".lastgood-fence.tmp." + std::to_string(::getpid()));
    const std::string text = std::to_string(token) + "\n";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return "cannot write " + tmp.string() + ": " + std::strerror(errno) + "; nothing was changed";
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    const int saved = errno;
    ::close(fd);
    if (!written || ::rename(tmp.c_str(), file.c_str()) != 0) {
      const std::string why = std::strerror(written ? errno : saved);
      ::unlink(tmp.c_str());
      return "cannot store the fencing token in " + file.string() + ": " + why + "; nothing was changed";
    }
    ::fsync(dfd);
    return std::nullopt;
  }

  Outcome switch_to(const std::string& to, int dfd) const {
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
    ::fsync(dfd);
    out.ok = true;
    out.output = "current -> releases/" + to;
    return out;
  }

  // Under the lock: before_switch, the switch, after_switch; the previous link put back when an
  // after_switch step fails (restore_on_failure). Each step's command, output and exit status
  // are in the outcome's output (recorded in action_finished).
  asio::awaitable<Outcome> switch_with_steps(const Plan& p, int dfd) {
    Outcome out;
    std::string log;
    StepRunner runner = [this](const SwitchStep& st, const Plan& plan) -> asio::awaitable<StepRun> {
      const std::vector<std::string> argv = st.local_argv(plan);
      const std::vector<std::string> env{"LASTGOOD_SERVICE=" + plan.context.service, "LASTGOOD_FROM=" + plan.from, "LASTGOOD_TO=" + plan.to,
                                         "LASTGOOD_ACTION_ID=" + plan.action_id};
      const std::vector<std::string> allow{"PATH"};
      const std::chrono::milliseconds limit = timeout_;
      const size_t cap = 16 * 1024;
      const std::string cwd = root_.string();
      ProcessResult r = co_await run_process(ex_, argv, allow, limit, cap, env, cwd);
      StepRun s;
      s.out = r.out;
      s.err = r.err;
      s.ran = r.error.empty();
      s.error = r.error;
      if (r.timed_out) {
        s.ran = false;
        s.error = "killed after its timeout of " + config::format_duration(timeout_);
      } else if (r.signal) {
        s.ran = false;
        s.error = "killed by signal " + std::to_string(r.signal);
      }
      s.exit_status = r.exit_status;
      co_return s;
    };
    const std::string before_failed = co_await run_switch_steps(steps_.before, "before_switch", p, runner, &log);
    if (!before_failed.empty()) {
      out.error = before_failed + "; nothing was switched";
      out.output = cap_output(log);
      co_return out;
    }
    Outcome sw = switch_to(p.to, dfd);
    log += sw.ok ? sw.output + "\n" : "[switch failed: " + sw.error + "]\n";
    if (!sw.ok) {
      sw.output = cap_output(log);
      co_return sw;
    }
    const std::string after_failed = co_await run_switch_steps(steps_.after, "after_switch", p, runner, &log);
    if (after_failed.empty()) {
      out.ok = true;
      out.output = cap_output(log);
      co_return out;
    }
    out.error = after_failed;
    if (steps_.restore_on_failure) {
      const Outcome back = switch_to(p.from, dfd);
      out.error += back.ok ? "; current was put back to releases/" + p.from : "; putting current back to releases/" + p.from + " failed: " + back.error;
      log += back.ok ? "current -> releases/" + p.from + " (put back)\n" : "[putting current back failed: " + back.error + "]\n";
    } else {
      out.error += "; current stays on releases/" + p.to + " (restore_on_failure is false)";
    }
    out.output = cap_output(log);
    co_return out;
  }

  asio::any_io_executor ex_;
  std::string service_;
  fs::path root_;
  SwitchSteps steps_;
  std::chrono::milliseconds timeout_{120'000};
};

}  // namespace

namespace {

using config::detail::Obj;

std::shared_ptr<const config::KindSpec> parse(Obj& o) {
  auto d = std::make_shared<LocalSymlinkSpec>();
  if (auto p = o.abs_path("path", true)) d->path = *p;
  parse_switch_steps(o, d->steps);
  if (auto t = o.duration("timeout", false, config::Duration{100})) d->timeout = *t;
  return d;
}

std::unique_ptr<Action> make(asio::any_io_executor ex, const std::string& service, const config::Deployment& d) {
  return std::make_unique<LocalSymlink>(std::move(ex), service, d);
}

}  // namespace

const Kind local_symlink_kind{{"local_symlink", parse}, make};

}  // namespace lastgood::actions
