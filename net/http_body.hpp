#pragma once
// Reads an HTTP/1.1 response body as its bytes arrive (RFC 9112 section 6): delimited by a
// Content-Length, by the chunked transfer coding (chunk extensions ignored, trailer fields
// skipped), or by the server closing the connection. No I/O and no allocation beyond the body:
// the caller reads more bytes into its buffer and calls feed() again. Separate from the client
// so that it can be fuzzed on its own (fuzz/fuzz_http_body).
#include <cstddef>
#include <cstdint>
#include <string>

namespace lastgood::net {

class BodyReader {
 public:
  enum class Framing { length, chunked, close };
  enum class Status { more, done, too_big, malformed };

  // `length`: the Content-Length (Framing::length only). A body longer than `max_body` is refused
  // as soon as that is known (at the header for a Content-Length).
  BodyReader(Framing framing, std::uint64_t length, std::size_t max_body) : framing_(framing), length_(length), max_body_(max_body) {}

  // `in` holds the response bytes read so far and the body's bytes start at `pos`; `eof` says the
  // server closed the connection (the end of a Framing::close body). Appends to `body` what is
  // complete, advances `pos` (a chunked body also erases consumed bytes from `in`, so a long
  // body does not keep its whole wire form), and says whether it needs more bytes. Once done,
  // bytes in `in` from `pos` on were sent after the body.
  Status feed(std::string& in, std::size_t& pos, bool eof, std::string& body);

  // Why a body was malformed ("bad chunk size", ...).
  const char* error() const { return error_; }

  // The longest chunk-size or trailer line accepted.
  static constexpr std::size_t kLineLimit = 4096;

 private:
  enum class State { size_line, data, data_end, trailer, done };
  Status malformed(const char* why) {
    error_ = why;
    return Status::malformed;
  }
  Framing framing_;
  std::uint64_t length_;
  std::size_t max_body_;
  State state_ = State::size_line;
  std::uint64_t chunk_ = 0;  // bytes of the current chunk still to come
  const char* error_ = "";
};

}  // namespace lastgood::net
