#pragma once
// What an HTTP exchange takes and gives: the request, the response or the error as a value.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace lastgood::net {

struct HttpRequest {
  std::string method = "GET";
  std::string target = "/";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpResponse {
  int status = 0;
  std::string head;  // the header lines as received ("Name: value\r\n" each), status line excluded
  std::string body;
  bool reused_connection = false;
  std::optional<std::chrono::duration<double, std::milli>> connect_ms, tls_ms;
  std::chrono::duration<double, std::milli> first_byte_ms{0}, total_ms{0};
  std::optional<std::chrono::system_clock::time_point> cert_not_after;
  std::optional<std::string> header(std::string_view name) const;  // case-insensitive
};

struct HttpError {
  // Where it broke. `resolve` means the watcher could not judge; the rest are the target's doing.
  enum class Stage { resolve, connect, tls, write, read_headers, read_body, body_limit, protocol };
  Stage stage;
  bool timeout = false;
  std::string message;
  // The watcher's own trouble (out of descriptors or memory, no local address, its deadline gone
  // before it could connect): the probe could not judge, whatever the stage.
  bool watcher = false;
  const char* stage_name() const;
};

using HttpResult = std::variant<HttpResponse, HttpError>;

}  // namespace lastgood::net
