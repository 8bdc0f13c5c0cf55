#pragma once
// Fields of a log line (service, probe, trigger, release, action_id, proposal_id, incident_id):
// with `--log-format json` each one given becomes a key of the line, so a log shipper can filter
// on them; the text format shows the message alone (it names them already).
//
//   logf::warn({.service = name, .trigger = t}, "decision {}/{}: {}", name, t, why);
//
// The fields are held for the call only, on the calling thread (spdlog's sink formats on it), so
// nothing is held across a co_await.
#include <string>
#include <utility>

#include <spdlog/spdlog.h>

namespace lastgood::watchdog::logf {

struct Fields {
  std::string service = {}, probe = {}, trigger = {}, release = {}, action_id = {}, proposal_id = {}, incident_id = {};
};

// The fields of the line being written on this thread, or null.
const Fields* current();

class Scope {
 public:
  explicit Scope(const Fields& f);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const Fields* prev_;
};

template <typename... Args>
void log(spdlog::level::level_enum lvl, const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  Scope s(f);
  spdlog::log(lvl, fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void debug(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  log(spdlog::level::debug, f, fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void info(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  log(spdlog::level::info, f, fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void warn(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  log(spdlog::level::warn, f, fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void error(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  log(spdlog::level::err, f, fmt, std::forward<Args>(args)...);
}

}  // namespace lastgood::watchdog::logf
