#include "net/http_wire.hpp"

#include <array>
#include <cctype>
#include <charconv>

#include <boost/beast/core/string.hpp>

namespace lastgood::net {

namespace beast = boost::beast;

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  std::string_view rest(head);
  while (!rest.empty()) {
    const auto eol = rest.find("\r\n");
    std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
    const auto colon = line.find(':');
    if (colon != name.size() || !beast::iequals(line.substr(0, colon), name)) continue;
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return std::string(v);
  }
  return std::nullopt;
}

const char* HttpError::stage_name() const {
  switch (stage) {
    case Stage::resolve: return "resolve";
    case Stage::connect: return "connect";
    case Stage::tls: return "tls";
    case Stage::write: return "write";
    case Stage::read_headers: return "read";
    case Stage::read_body: return "read";
    case Stage::body_limit: return "body";
    case Stage::protocol: return "protocol";
  }
  return "?";
}

namespace {

// ASCII case-insensitive comparison (header names and tokens).
bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x != y && (x | 0x20) != (y | 0x20)) return false;
    if (x != y && !((x | 0x20) >= 'a' && (x | 0x20) <= 'z')) return false;
  }
  return true;
}

// Whether a comma-separated header value lists `token` (case-insensitive).
bool lists_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    auto comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (iequal(item, token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

// RFC 9110 token characters, as a table: the header name check runs for every header of every
// response.
constexpr std::array<bool, 256> kTokenChar = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

// Bytes that end a header value's scan: CR (the line's end, when LF follows), and LF and NUL
// (refused anywhere in a value).
constexpr std::array<bool, 256> kValueStop = [] {
  std::array<bool, 256> t{};
  t['\r'] = t['\n'] = t['\0'] = true;
  return t;
}();

}  // namespace

// Parses a complete header block (ending in CRLF CRLF). Returns an error text for a malformed one.
std::optional<std::string> parse_head(std::string_view block, Head& h) {
  auto eol = block.find("\r\n");
  std::string_view status_line = block.substr(0, eol);
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." || !std::isdigit(static_cast<unsigned char>(status_line[7])) ||
      status_line[8] != ' ' || !std::isdigit(static_cast<unsigned char>(status_line[9])) ||
      !std::isdigit(static_cast<unsigned char>(status_line[10])) || !std::isdigit(static_cast<unsigned char>(status_line[11])) ||
      (status_line.size() > 12 && status_line[12] != ' '))
    return "bad status line";
  h.minor = status_line[7] - '0';
  h.status = (status_line[9] - '0') * 100 + (status_line[10] - '0') * 10 + (status_line[11] - '0');
  if (h.status < 100) return "bad status code";
  h.fields = block.substr(eol + 2, block.size() - (eol + 2) - 2);  // without the final empty line
  // One pass over the bytes with two tables (token characters; bytes a value may not hold), no
  // searches or views per line: this runs for every response of every probe.
  const char* p = h.fields.data();
  const char* const end = p + h.fields.size();
  while (p < end) {
    const char* const name = p;
    while (p < end && kTokenChar[static_cast<unsigned char>(*p)]) ++p;
    if (p == name || p == end || *p != ':') return "bad header line";
    const std::size_t name_len = static_cast<std::size_t>(p - name);
    const char* v = ++p;
    while (p < end && !kValueStop[static_cast<unsigned char>(*p)]) ++p;
    // The line ends at CR LF (the block's last line at its end); any other CR, LF or NUL is refused.
    if (p < end && (*p != '\r' || p + 1 >= end || p[1] != '\n')) return "bad header value";
    const char* ve = p;
    p += p < end ? 2 : 0;
    // Only three fields matter for framing; their lengths settle most names at once.
    if (name_len != 14 && name_len != 17 && name_len != 10) continue;
    const std::string_view n(name, name_len);
    while (v < ve && (*v == ' ' || *v == '\t')) ++v;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) --ve;
    const std::string_view value(v, static_cast<std::size_t>(ve - v));
    if (name_len == 14 && iequal(n, "content-length")) {
      std::uint64_t len = 0;
      auto [q, ec] = std::from_chars(value.data(), value.data() + value.size(), len);
      if (ec != std::errc() || q != value.data() + value.size() || value.empty()) return "bad Content-Length";
      if (h.content_length && *h.content_length != len) return "conflicting Content-Length";
      h.content_length = len;
    } else if (name_len == 17 && iequal(n, "transfer-encoding")) {
      auto last = value.substr(value.rfind(',') == std::string_view::npos ? 0 : value.rfind(',') + 1);
      while (!last.empty() && last.front() == ' ') last.remove_prefix(1);
      h.chunked = iequal(last, "chunked");
      if (!h.chunked) return "unsupported Transfer-Encoding";
    } else if (name_len == 10 && iequal(n, "connection")) {
      if (value.size() == 10 && iequal(value, "keep-alive")) {  // nearly always the whole value
        h.keep_alive = true;
        continue;
      }
      h.close = h.close || lists_token(value, "close");
      h.keep_alive = h.keep_alive || lists_token(value, "keep-alive");
    }
  }
  if (h.chunked) h.content_length.reset();  // Transfer-Encoding wins (RFC 9112 6.3)
  return std::nullopt;
}

std::optional<std::string> check_response_head(std::string_view block) {
  Head h;
  return parse_head(block, h);
}

std::optional<HttpError> serialize_request(const Url& origin, const HttpRequest& r, std::string& out) {
  auto bad = [](std::string_view s, bool spaces_too) {
    for (char c : s)
      if (c == '\r' || c == '\n' || c == '\0' || (spaces_too && (c == ' ' || c == '\t'))) return true;
    return false;
  };
  if (r.method.empty() || bad(r.method, true) || bad(r.target, true))
    return HttpError{HttpError::Stage::protocol, false, "the request method or target holds characters HTTP does not allow"};
  const bool default_port = (origin.tls() && origin.port == "443") || (!origin.tls() && origin.port == "80");
  const bool v6 = origin.host.find(':') != std::string::npos;
  out.reserve(128 + r.target.size() + r.body.size());
  out.append(r.method).append(" ").append(r.target.empty() ? "/" : r.target).append(" HTTP/1.1");
  bool user_agent = false, host = false;
  for (const auto& [k, v] : r.headers) {
    if (k.empty() || bad(k, true) || bad(v, false))
      return HttpError{HttpError::Stage::protocol, false, "header " + k + " holds characters HTTP does not allow"};
    if (beast::iequals(k, "content-length")) continue;
    user_agent = user_agent || beast::iequals(k, "user-agent");
    host = host || beast::iequals(k, "host");  // a configured Host (virtual hosting) replaces the URL's
    out.append("\r\n").append(k).append(": ").append(v);
  }
  if (!host) {
    out.append("\r\nHost: ");
    if (v6) out.append("[").append(origin.host).append("]");
    else out.append(origin.host);
    if (!default_port) out.append(":").append(origin.port);
  }
  if (!user_agent) out.append("\r\nUser-Agent: lastgood");
  if (!r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH")
    out.append("\r\nContent-Length: ").append(std::to_string(r.body.size()));
  out.append("\r\n\r\n").append(r.body);
  return std::nullopt;
}

std::string with_connection_close(const std::string& request) {
  const auto end = request.find("\r\n\r\n");
  if (end == std::string::npos) return request;
  const std::string_view head(request.data(), end);
  for (size_t p = head.find("\r\n"); p != std::string_view::npos; p = head.find("\r\n", p + 2))
    if (head.size() - p - 2 >= 11 && beast::iequals(head.substr(p + 2, 11), "connection:")) return request;
  std::string out;
  out.reserve(request.size() + 19);
  out.append(request, 0, end).append("\r\nConnection: close").append(request, end, std::string::npos);
  return out;
}

}  // namespace lastgood::net
