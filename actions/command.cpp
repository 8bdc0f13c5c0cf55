#include "actions/command.hpp"

#include "actions/process.hpp"

namespace lastgood::actions {

namespace asio = boost::asio;

namespace {

class Command final : public Action {
 public:
  Command(asio::any_io_executor ex, std::string service, const config::Deployment& d) : ex_(std::move(ex)), service_(std::move(service)) {
    rollback_ = d.spec.at("rollback").get<std::vector<std::string>>();
    observe_ = d.spec.value("observe", std::vector<std::string>{});
    env_allow_ = d.spec.value("env_allow", std::vector<std::string>{"PATH"});
    if (d.spec.contains("timeout")) timeout_ = *config::parse_duration(d.spec.at("timeout").get<std::string>());
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
    auto r = co_await run_process(ex_, argv, env_allow_, std::min(timeout_, std::chrono::milliseconds(30'000)));
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
    auto r = co_await run_process(ex_, argv, env_allow_, timeout_);
    Outcome out;
    out.output = cap_output(r.out + (r.err.empty() ? "" : "\n[stderr]\n" + r.err));
    out.ok = r.succeeded();
    if (!out.ok)
      out.error = argv[0] + ": " + (r.timed_out ? "killed after its timeout of " + config::format_duration(timeout_) : r.describe()) +
                  (r.err.empty() ? "" : ": " + cap_output(r.err, 1024));
    co_return out;
  }

 private:
  asio::any_io_executor ex_;
  std::string service_;
  std::vector<std::string> rollback_, observe_, env_allow_;
  std::chrono::milliseconds timeout_{120'000};
};

}  // namespace

std::unique_ptr<Action> make_command(asio::any_io_executor ex, const std::string& service, const config::Deployment& d) {
  return std::make_unique<Command>(std::move(ex), service, d);
}

}  // namespace lastgood::actions
