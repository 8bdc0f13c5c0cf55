#include "actions/command.hpp"

#include "config/reader.hpp"

#include "actions/process.hpp"

namespace lastgood::actions {

namespace asio = boost::asio;

namespace {

class Command final : public Action {
 public:
  Command(asio::any_io_executor ex, std::string service, const config::Deployment& d) : ex_(std::move(ex)), service_(std::move(service)) {
    const auto& spec = config::spec_as<CommandSpec>(d.spec);
    rollback_ = spec.rollback;
    observe_ = spec.observe;
    env_allow_ = spec.env_allow;
    if (spec.timeout) timeout_ = *spec.timeout;
  }
  const char* kind() const override { return "command"; }

  asio::awaitable<Observation> observe() override {
    Observation o;
    if (observe_.empty()) {
      o.error = "no observe command configured";
      co_return o;
    }
    Plan p{"", "", {service_, "", ""}, {}};
    std::vector<std::string> argv;
    for (const auto& a : observe_) argv.push_back(expand(a, p));
    // (GCC 12: no temporaries in the arguments of a co_await'ed call: a std::min over one here
    // gave the next run of this coroutine a 30 s timeout instead of its own)
    const std::chrono::milliseconds limit = std::min(timeout_, std::chrono::milliseconds(30'000));
    auto r = co_await run_process(ex_, argv, env_allow_, limit);
    if (!r.succeeded()) {
      o.error = "observe command " + argv[0] + ": " + r.describe() + (r.err.empty() ? "" : ": " + cap_output(r.err, 512));
      co_return o;
    }
    std::string id = r.out.substr(0, r.out.find('\n'));
    while (!id.empty() && (id.back() == '\r' || id.back() == ' ')) id.pop_back();
    if (id.empty()) o.error = "observe command " + argv[0] + " printed no release";
    else o.live = ObservedRelease{id, std::nullopt, false};
    co_return o;
  }

  Plan plan(const std::string& from, const std::string& to, const Context& ctx) const override {
    Plan p{from, to, ctx, {}};
    if (!observe_.empty()) p.steps.push_back("run the observe command: the live release must still be " + from);
    std::string line;
    for (const auto& a : rollback_) {
      if (!line.empty()) line += ' ';
      line += expand(a, p);
    }
    p.steps.push_back("run " + line + " (timeout " + config::format_duration(timeout_) + ", no shell)");
    return p;
  }

  asio::awaitable<Outcome> execute(const Plan& p) override {
    if (!observe_.empty()) {  // the live release, read just before the command, must still be plan.from
      const Observation now = co_await observe();
      if (!now.live) {
        Outcome out;
        out.error = "reading the live release before the switch failed: " + now.error + "; nothing was changed";
        co_return out;
      }
      if (now.live->id != p.from) co_return refused_not_from(p, now.live->id);
    }
    std::vector<std::string> argv;
    for (const auto& a : rollback_) argv.push_back(expand(a, p));
    // The token and the action's id, for a script that checks them (ha.md: strict if it does).
    std::vector<std::string> env{"LASTGOOD_FENCE=" + std::to_string(p.fence), "LASTGOOD_ACTION_ID=" + p.action_id};
    const std::chrono::milliseconds limit = timeout_;
    const size_t cap = 16 * 1024;
    auto r = co_await run_process(ex_, argv, env_allow_, limit, cap, std::move(env));
    Outcome out;
    out.output = cap_output(r.out + (r.err.empty() ? "" : "\n[stderr]\n" + r.err));
    out.ok = r.succeeded();
    if (!out.ok)
      out.error = argv[0] + ": " + (r.timed_out ? "killed after its timeout of " + config::format_duration(timeout_) : r.describe()) +
                  (r.err.empty() ? "" : ": " + cap_output(r.err, 1024));
    co_return out;
  }

  std::chrono::milliseconds step_timeout() const override { return timeout_; }

 private:
  asio::any_io_executor ex_;
  std::string service_;
  std::vector<std::string> rollback_, observe_, env_allow_;
  std::chrono::milliseconds timeout_{120'000};
};

}  // namespace

namespace {

using config::detail::Obj;

std::shared_ptr<const config::KindSpec> parse(Obj& o) {
  auto d = std::make_shared<CommandSpec>();
  if (auto r = o.strings("rollback", true, true)) d->rollback = *r;
  // Required: without reading the live release lastgood cannot decide (every decision would hold
  // on "live release unknown" while validate says ok).
  if (!o.has("observe"))
    o.ctx().error(o.at("observe"), "required key is missing: without a command that prints the live release lastgood cannot decide a rollback");
  if (auto r = o.strings("observe", false, true)) d->observe = *r;
  if (auto t = o.duration("timeout", false, config::Duration{100})) d->timeout = *t;
  if (auto e = o.strings("env_allow")) d->env_allow = *e;
  return d;
}

std::unique_ptr<Action> make(asio::any_io_executor ex, const std::string& service, const config::Deployment& d) {
  return std::make_unique<Command>(std::move(ex), service, d);
}

}  // namespace

const Kind command_kind{{"command", parse}, make};

}  // namespace lastgood::actions
