#include "actions/switch_steps.hpp"

#include <algorithm>
#include <cstring>

#include "actions/ssh_session.hpp"

namespace lastgood::actions {

using nlohmann::json;

namespace {

// A word as a shell reads it: as is when it has nothing the shell would interpret, else quoted.
std::string word(const std::string& w) {
  if (!w.empty() && std::all_of(w.begin(), w.end(), [](unsigned char c) { return std::isalnum(c) || std::strchr("_@%+=:,./-", c); })) return w;
  return shell_quote(w);
}

// The plan with every value a template can take shell-quoted (for a shell command).
Plan quoted(const Plan& p) {
  Plan q = p;
  q.from = word(p.from);
  q.to = word(p.to);
  q.action_id = word(p.action_id);
  q.context.service = word(p.context.service);
  q.context.trigger = word(p.context.trigger);
  q.context.reason = word(p.context.reason);
  return q;
}

}  // namespace

std::string SwitchStep::command_line(const Plan& p) const {
  if (!shell.empty()) return expand(shell, quoted(p));
  std::string line;
  for (const auto& a : argv) line += (line.empty() ? "" : " ") + word(expand(a, p));
  return line;
}

std::vector<std::string> SwitchStep::local_argv(const Plan& p) const {
  if (!shell.empty()) return {"/bin/sh", "-c", expand(shell, quoted(p))};
  std::vector<std::string> out;
  for (const auto& a : argv) out.push_back(expand(a, p));
  return out;
}

void parse_switch_steps(config::detail::Obj& o, SwitchSteps& into) {
  for (const char* key : {"before_switch", "after_switch"}) {
    const json* v = o.get(key);
    if (!v) continue;
    auto& list = std::string(key) == "before_switch" ? into.before : into.after;
    const std::string at = o.at(key);
    if (!v->is_array()) {
      o.ctx().error(at, "expected an array of steps, each a shell command (a string) or an argv (an array of strings)");
      continue;
    }
    for (size_t i = 0; i < v->size(); ++i) {
      const json& s = (*v)[i];
      const std::string here = at + "/" + std::to_string(i);
      SwitchStep step;
      if (s.is_string() && !s.get<std::string>().empty()) {
        step.shell = s.get<std::string>();
      } else if (s.is_array() && !s.empty() && std::all_of(s.begin(), s.end(), [](const json& w) { return w.is_string(); }) &&
                 !s[0].get<std::string>().empty()) {
        for (const auto& w : s) step.argv.push_back(w.get<std::string>());
      } else {
        o.ctx().error(here, "expected a shell command (a non-empty string) or an argv (a non-empty array of strings)");
        continue;
      }
      list.push_back(std::move(step));
    }
  }
  if (auto b = o.boolean("restore_on_failure")) into.restore_on_failure = *b;
}

boost::asio::awaitable<std::string> run_switch_steps(const std::vector<SwitchStep>& steps, const char* what, const Plan& p,
                                                     const StepRunner& run, std::string* log) {
  for (size_t i = 0; i < steps.size(); ++i) {
    const std::string line = steps[i].command_line(p);
    const std::string name = std::string(what) + " step " + std::to_string(i + 1) + " (" + line + ")";
    StepRun r = co_await run(steps[i], p);
    *log += "$ " + line + "\n" + r.out + (r.err.empty() ? "" : "[stderr]\n" + r.err);
    if (!log->empty() && log->back() != '\n') *log += "\n";
    if (!r.ran) {
      *log += "[could not run: " + r.error + "]\n";
      co_return name + " could not run: " + r.error;
    }
    *log += "[exit status " + std::to_string(r.exit_status) + "]\n";
    if (r.exit_status != 0) co_return name + " exited with status " + std::to_string(r.exit_status) + (r.err.empty() ? "" : ": " + cap_output(r.err, 1024));
  }
  co_return std::string();
}

}  // namespace lastgood::actions
