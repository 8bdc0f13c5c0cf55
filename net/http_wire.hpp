#pragma once
// HTTP/1.1 on the wire, without I/O: request bytes out, the response's header block in. A small,
// strict parser over bytes already read: it never allocates per header; it finds the status, the
// body framing and whether the connection may be kept.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "net/http_types.hpp"
#include "net/url.hpp"

namespace lastgood::net {

// A response head larger than this is refused.
constexpr std::size_t kHeaderLimit = 64 * 1024;

struct Head {
  int status = 0;
  int minor = 1;  // HTTP/1.x
  std::optional<std::uint64_t> content_length;
  bool chunked = false;
  bool close = false, keep_alive = false;  // Connection tokens
  std::string_view fields;                 // the header lines, status line excluded
};

// Parses a complete header block (ending in CRLF CRLF). Returns an error text for a malformed one.
std::optional<std::string> parse_head(std::string_view block, Head& h);
// The same without the result (for the fuzzer and tests).
std::optional<std::string> check_response_head(std::string_view block);
// Whether the response to a request carries no body (HEAD, 1xx, 204, 304).
inline bool bodiless(const Head& h, bool head_request) { return head_request || h.status == 204 || h.status == 304 || h.status < 200; }
// Whether the connection may carry another request after this response.
inline bool keeps_alive(const Head& h) { return h.minor >= 1 ? !h.close : (h.keep_alive && !h.close); }

// Appends HTTP/1.1 request bytes for `origin` to `out` (Host, User-Agent and Content-Length
// added), or returns the error for a method, target or header that would split the request
// (CR, LF, NUL; spaces in the method or target).
// The request with "Connection: close" added to its head (unless it names a Connection itself):
// for a connection used once, so that the server closes first and the TIME_WAIT is its own, not
// lastgood's (at thousands of connects a second, lastgood's TIME_WAITs crowd its ephemeral ports
// and each connect() then searches them: 76% of its CPU, measured at 50 000 targets).
std::string with_connection_close(const std::string& request);
std::optional<HttpError> serialize_request(const Url& origin, const HttpRequest& r, std::string& out);

}  // namespace lastgood::net
