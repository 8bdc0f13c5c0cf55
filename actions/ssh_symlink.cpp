#include "actions/ssh_symlink.hpp"

#include "config/reader.hpp"

#include <unistd.h>

#include <atomic>
#include <charconv>
#include <ctime>
#include <optional>
#include <sstream>

#include "actions/ssh_session.hpp"

namespace lastgood::actions {

namespace asio = boost::asio;
using SysClock = std::chrono::system_clock;

namespace {

// Seconds since the epoch as the remote `stat -c %Y` prints them; nullopt for anything else (the
// host's output is not trusted to be well formed).
std::optional<SysClock::time_point> epoch_seconds(const std::string& text) {
  long long v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 0 || v > 32503680000LL) return std::nullopt;
  return SysClock::from_time_t(static_cast<std::time_t>(v));
}

class SshSymlink final : public Action {
 public:
  SshSymlink(asio::any_io_executor ex, std::string service, const config::Deployment& d) : service_(std::move(service)) {
    const auto& spec = config::spec_as<SshSymlinkSpec>(d.spec);
    SshOptions o;
    o.host = spec.host;
    o.port = spec.port;
    o.user = spec.user;
    o.key_file = spec.key_file;
    o.use_agent = spec.use_agent;
    o.known_hosts = spec.known_hosts;
    if (spec.timeout) o.timeout = *spec.timeout;
    path_ = spec.path;
    steps_ = spec.steps;
    ssh_ = std::make_unique<SshSession>(std::move(ex), std::move(o));
  }
  const char* kind() const override { return "ssh_symlink"; }

  asio::awaitable<Observation> observe() override {
    // One round trip: the live target and its switch time, the releases with theirs, the marker.
    const std::string cmd = "cd " + shell_quote(path_) +
                            " && printf 'live=%s\\n' \"$(readlink current)\" && printf 'mtime=%s\\n' \"$(stat -c %Y current)\""
                            " && for d in releases/*/; do [ -d \"$d\" ] && printf 'release=%s %s\\n' \"$(basename \"$d\")\" \"$(stat -c %Y \"$d\")\"; done;"
                            " if [ -e current/.lastgood-migration ]; then echo migration=1; fi; true";
    ExecResult r = co_await ssh_->exec(cmd);
    Observation o;
    if (!r.ran()) {
      o.error = r.error;
      co_return o;
    }
    if (r.exit_status != 0) {
      o.error = "reading " + path_ + " failed (exit " + std::to_string(r.exit_status) + "): " + cap_output(r.err, 512);
      co_return o;
    }
    std::istringstream in(r.out);
    std::string line, live_target;
    std::optional<SysClock::time_point> mtime;
    bool migration = false;
    while (std::getline(in, line)) {
      if (line.rfind("live=", 0) == 0) live_target = line.substr(5);
      else if (line.rfind("mtime=", 0) == 0) mtime = epoch_seconds(line.substr(6));
      else if (line == "migration=1") migration = true;
      else if (line.rfind("release=", 0) == 0) {
        auto sp = line.find(' ', 8);
        ObservedRelease rel{line.substr(8, sp - 8), std::nullopt, false};
        if (sp != std::string::npos) rel.deployed_at = epoch_seconds(line.substr(sp + 1));
        o.history.push_back(rel);
      }
    }
    while (!live_target.empty() && live_target.back() == '/') live_target.pop_back();
    const std::string prefix = "releases/";
    std::string id = live_target.rfind(prefix, 0) == 0 ? live_target.substr(prefix.size())
                     : live_target.rfind(path_ + "/" + prefix, 0) == 0 ? live_target.substr(path_.size() + 1 + prefix.size())
                                                                       : "";
    if (id.empty() || id.find('/') != std::string::npos) {
      o.error = path_ + "/current points to \"" + live_target + "\", not to a folder in releases/";
      co_return o;
    }
    o.live = ObservedRelease{id, mtime, migration};
    co_return o;
  }

  Plan plan(const std::string& from, const std::string& to, const Context& ctx) const override {
    Plan p{from, to, ctx, {}};
    for (const auto& st : steps_.before) p.steps.push_back(in_path(st.command_line(p)));
    p.steps.push_back(switch_command(from, to));
    for (const auto& st : steps_.after) p.steps.push_back(in_path(st.command_line(p)));
    if (!steps_.after.empty() && steps_.restore_on_failure) p.steps.push_back("if an after_switch step fails: " + restore_command(from));
    return p;
  }

  asio::awaitable<Outcome> execute(const Plan& p) override {
    Outcome out;
    if (!valid_release_name(p.to) || !valid_release_name(p.from)) {
      out.error = "refused: \"" + (valid_release_name(p.to) ? p.from : p.to) + "\" is not a valid release name";
      co_return out;
    }
    std::string log;
    StepRunner runner = [this](const SwitchStep& st, const Plan& plan) -> asio::awaitable<StepRun> {
      const std::string cmd = in_path(st.command_line(plan));
      ExecResult r = co_await ssh_->exec(cmd);
      StepRun s;
      s.ran = r.ran();
      s.error = r.error;
      s.exit_status = r.exit_status;
      s.out = r.out;
      s.err = r.err;
      co_return s;
    };
    const std::string before_failed = co_await run_switch_steps(steps_.before, "before_switch", p, runner, &log);
    if (!before_failed.empty()) {
      out.error = before_failed + "; nothing was switched";
      out.output = cap_output(log);
      co_return out;
    }
    // With several replicas the switch is fenced on the host itself (ha.md), in the same command.
    const std::string step = switch_command(p.from, p.to, p.fence);
    ExecResult r = co_await ssh_->exec(step);
    if (!r.ran()) {
      out.error = "switch: " + r.error;
      out.output = cap_output(log);
      co_return out;
    }
    log += "$ " + step + "\n" + r.out + r.err;
    if (r.exit_status == kStaleFence) {
      std::string held;
      if (auto at = r.out.find("lastgood-fence="); at != std::string::npos) held = r.out.substr(at + 15, r.out.find('\n', at) - at - 15);
      out.error = "refused by the target: " + path_ + "/.lastgood-fence holds token " + (held.empty() ? "?" : held) +
                  ", not lower than this action's " + std::to_string(p.fence) + " (a newer owner acted); nothing was changed";
      out.output = cap_output(log);
      co_return out;
    }
    if (r.exit_status == kNotFrom) {  // the live release was checked in the same command: not from
      std::string live;
      if (auto at = r.out.find("lastgood-live="); at != std::string::npos) live = r.out.substr(at + 14, r.out.find('\n', at) - at - 14);
      while (!live.empty() && live.back() == '/') live.pop_back();
      if (live.rfind("releases/", 0) == 0) live = live.substr(9);
      else if (live.rfind(path_ + "/releases/", 0) == 0) live = live.substr(path_.size() + 10);
      Outcome refused = refused_not_from(p, live);
      refused.output = cap_output(log);
      co_return refused;
    }
    if (r.exit_status != 0) {
      out.error = "switch to " + p.to + " exited with status " + std::to_string(r.exit_status) + ": " + cap_output(r.err, 1024);
      out.output = cap_output(log);
      co_return out;
    }
    const std::string after_failed = co_await run_switch_steps(steps_.after, "after_switch", p, runner, &log);
    if (after_failed.empty()) {
      out.ok = true;
      out.output = cap_output(log);
      co_return out;
    }
    out.error = after_failed;
    if (steps_.restore_on_failure) {
      const std::string back = restore_command(p.from);
      ExecResult b = co_await ssh_->exec(back);
      log += "$ " + back + "\n" + b.out + b.err;
      const bool restored = b.ran() && b.exit_status == 0;
      out.error += restored ? "; current was put back to releases/" + p.from
                            : "; putting current back to releases/" + p.from + " failed: " + (b.ran() ? "exit status " + std::to_string(b.exit_status) : b.error);
    } else {
      out.error += "; current stays on releases/" + p.to + " (restore_on_failure is false)";
    }
    out.output = cap_output(log);
    co_return out;
  }

 private:
  static constexpr int kStaleFence = 75;  // ha.md: exit 75 stale token, 76 live changed
  static constexpr int kNotFrom = 76;

  // One remote command: the live release is compared with `from` and switched to `to` in the same
  // shell, so no round trip separates the check from the switch. With a fencing token (several
  // replicas, ha.md: strict on the host), all of it runs under `flock -w5` on path/.lastgood-lock
  // (util-linux's flock(1), on every Debian host): the token stored beside `current` must be lower
  // than this action's (else exit 75), and this action's is stored before the switch.
  std::string in_path(const std::string& cmd) const { return "cd " + shell_quote(path_) + " && " + cmd; }

  // Puts the previous link back after a failed after_switch step (restore_on_failure).
  std::string restore_command(const std::string& from) const {
    static std::atomic<unsigned> n{0};
    const std::string tmp = "current.tmp." + std::to_string(::getpid()) + ".r" + std::to_string(++n);
    return "cd " + shell_quote(path_) + " && test -d " + shell_quote("releases/" + from) + " && ln -sfn " + shell_quote("releases/" + from) + " " + tmp +
           " && mv -Tf " + tmp + " current";
  }

  std::string switch_command(const std::string& from, const std::string& to, std::int64_t fence = 0) const {
    static std::atomic<unsigned> n{0};
    const std::string tmp = "current.tmp." + std::to_string(::getpid()) + "." + std::to_string(++n);
    const std::string t = std::to_string(fence);
    const std::string stale = std::to_string(kStaleFence);
    std::string cmd = "cd " + shell_quote(path_) + " || exit 1; ";
    if (fence != 0)
      cmd += "exec 9>>.lastgood-lock || exit 1; flock -w5 9 || exit 1; f=$(cat .lastgood-fence 2>/dev/null || echo 0); case \"$f\" in "
             "''|*[!0-9]*) printf 'lastgood-fence=%s\\n' \"$f\"; exit " + stale + ";; esac; if [ \"$f\" -ge " + t +
             " ]; then printf 'lastgood-fence=%s\\n' \"$f\"; exit " + stale + "; fi; ";
    cmd += "l=$(readlink current); l=${l%/}; if [ \"$l\" != " + shell_quote("releases/" + from) + " ] && [ \"$l\" != " +
           shell_quote(path_ + "/releases/" + from) + " ]; then printf 'lastgood-live=%s\\n' \"$l\"; exit " + std::to_string(kNotFrom) +
           "; fi; test -d " + shell_quote("releases/" + to) + " && ";
    if (fence != 0) cmd += "printf '%s\\n' " + t + " > .lastgood-fence.tmp && mv -f .lastgood-fence.tmp .lastgood-fence && ";
    cmd += "ln -sfn " + shell_quote("releases/" + to) + " " + tmp + " && mv -Tf " + tmp + " current";
    return cmd;
  }

  std::string service_;
  std::string path_;
  SwitchSteps steps_;
  std::unique_ptr<SshSession> ssh_;
};

}  // namespace

namespace {

using config::detail::Obj;

std::shared_ptr<const config::KindSpec> parse(Obj& o) {
  auto d = std::make_shared<SshSymlinkSpec>();
  if (auto h = o.str("host", true)) d->host = *h;
  if (auto n = o.integer("port", 1, 65535)) d->port = static_cast<int>(*n);
  if (auto u = o.str("user", true)) d->user = *u;
  if (auto k = o.abs_path("key_file")) d->key_file = *k;
  if (auto a = o.boolean("use_agent")) d->use_agent = *a;
  if (auto k = o.abs_path("known_hosts", true)) d->known_hosts = *k;
  if (auto p = o.abs_path("path", true)) d->path = *p;
  parse_switch_steps(o, d->steps);
  if (auto t = o.duration("timeout", false, config::Duration{100})) d->timeout = *t;
  if (!o.has("key_file") && !o.has("use_agent")) o.ctx().error(o.at("key_file"), "required: key_file (or \"use_agent\": true)");
  return d;
}

std::unique_ptr<Action> make(asio::any_io_executor ex, const std::string& service, const config::Deployment& d) {
  return std::make_unique<SshSymlink>(std::move(ex), service, d);
}

}  // namespace

const Kind ssh_symlink_kind{{"ssh_symlink", parse}, make};

}  // namespace lastgood::actions
