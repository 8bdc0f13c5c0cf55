#include "watchdog/logging.hpp"

#include "watchdog/log_fields.hpp"

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace lastgood::watchdog {

namespace {
// %* : the message as a JSON string (quoted and escaped).
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string s = nlohmann::json(std::string(msg.payload.data(), msg.payload.size()))
                        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(s.data(), s.data() + s.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonMessageFlag>(); }
};

// %& : the line's fields (log_fields.hpp), each given one as ,"key":"value".
class JsonFieldsFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& dest) override {
    const logf::Fields* f = logf::current();
    if (!f) return;
    auto put = [&](const char* key, const std::string& v) {
      if (v.empty()) return;
      const std::string s = std::string(",\"") + key + "\":" + nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      dest.append(s.data(), s.data() + s.size());
    };
    put("service", f->service);
    put("probe", f->probe);
    put("trigger", f->trigger);
    put("release", f->release);
    put("action_id", f->action_id);
    put("proposal_id", f->proposal_id);
    put("incident_id", f->incident_id);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonFieldsFlag>(); }
};

thread_local const logf::Fields* t_fields = nullptr;
}  // namespace

namespace logf {
const Fields* current() { return t_fields; }
Scope::Scope(const Fields& f) : prev_(t_fields) { t_fields = &f; }
Scope::~Scope() { t_fields = prev_; }
}  // namespace logf

bool setup_logging(const std::string& format, const std::string& level) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") return false;
  std::shared_ptr<spdlog::logger> logger;
  if (format == "json") {
    logger = std::make_shared<spdlog::logger>("lastgood", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    // ts in RFC 3339, UTC ("2026-11-25T23:19:14.353Z"), as log shippers parse it.
    auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    f->add_flag<JsonMessageFlag>('*').add_flag<JsonFieldsFlag>('&').set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","msg":%*%&})");
    logger->set_formatter(std::move(f));
  } else if (format == "text") {
    if (isatty(STDERR_FILENO)) logger = std::make_shared<spdlog::logger>("lastgood", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    else logger = std::make_shared<spdlog::logger>("lastgood", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  } else {
    return false;
  }
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  return true;
}

}  // namespace lastgood::watchdog
