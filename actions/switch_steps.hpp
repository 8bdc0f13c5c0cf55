#pragma once
// The web tier around a symlink switch (local_symlink and ssh_symlink): `before_switch` steps
// (e.g. a config test; a failing one means no switch), `after_switch` steps (e.g. `nginx -s
// reload`, a cache purge; a failing one puts the previous link back when `restore_on_failure`,
// the default). A step is an argv list (no shell locally; each word shell-quoted over SSH) or a
// string (a shell command: `sh -c` locally, as written over SSH). ${service} ${from} ${to}
// ${action_id} expand in both (shell-quoted in a string). Steps run in the deployment's `path`.
#include <functional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "actions/action.hpp"
#include "config/reader.hpp"

namespace lastgood::actions {

struct SwitchStep {
  std::vector<std::string> argv;  // an argv list, or
  std::string shell;              // a shell command
  // What the step runs with the plan's values expanded: a shell command line (for SSH and logs).
  std::string command_line(const Plan& p) const;
  // The argv to run locally, expanded: argv as given, or {"/bin/sh", "-c", shell}.
  std::vector<std::string> local_argv(const Plan& p) const;
};

struct SwitchSteps {
  std::vector<SwitchStep> before, after;
  bool restore_on_failure = true;
  bool empty() const { return before.empty() && after.empty(); }
};

// Reads before_switch, after_switch and restore_on_failure of a deployment block.
void parse_switch_steps(config::detail::Obj& o, SwitchSteps& into);

// How one step went, as a runner reports it.
struct StepRun {
  bool ran = false;      // false: it could not be started (the error says why)
  int exit_status = -1;  // when it ran
  std::string out, err, error;
  bool ok() const { return ran && exit_status == 0; }
};
using StepRunner = std::function<boost::asio::awaitable<StepRun>(const SwitchStep&, const Plan&)>;

// Runs `steps` (named `what`, "before_switch" or "after_switch") in order; appends "$ cmd",
// output and status of each to *log. Returns the error of the first that fails ("after_switch
// step 2 (nginx -s reload) exited with status 1: ..."), or "" when all succeeded.
boost::asio::awaitable<std::string> run_switch_steps(const std::vector<SwitchStep>& steps, const char* what, const Plan& p,
                                                     const StepRunner& run, std::string* log);

}  // namespace lastgood::actions
