// The response body readers (Content-Length, chunked, close-delimited) on any bytes a target
// sends, split into reads at any points: the result must not depend on where the reads split
// (a differential check against the whole input in one read), the body never exceeds its limit,
// and a Content-Length body is exactly that long.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "net/http_body.hpp"

using lastgood::net::BodyReader;

namespace {

struct Outcome {
  BodyReader::Status status;
  std::string body;
  std::string rest;  // bytes after the body
};

Outcome run(BodyReader::Framing f, std::uint64_t length, std::size_t max_body, const std::string& wire, std::uint32_t seed) {
  BodyReader r(f, length, max_body);
  std::string in, body;
  std::size_t pos = 0, fed = 0;
  for (;;) {
    const bool eof = fed == wire.size();
    const auto st = r.feed(in, pos, eof, body);
    if (body.size() > max_body) std::abort();
    if (st != BodyReader::Status::more) return {st, body, st == BodyReader::Status::done ? in.substr(pos) : ""};
    if (eof) return {BodyReader::Status::more, body, ""};  // the connection closed first: the caller's read error
    std::size_t n = wire.size() - fed;
    if (seed != 0) {
      seed ^= seed << 13;
      seed ^= seed >> 17;
      seed ^= seed << 5;
      n = std::min<std::size_t>(n, 1 + seed % 17);
    }
    in.append(wire, fed, n);
    fed += n;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 5) return 0;
  const auto framing = static_cast<BodyReader::Framing>(data[0] % 3);
  const std::size_t max_body = (static_cast<std::size_t>(data[1]) << 4) + 1;  // 1 .. 4081
  const std::uint64_t length = (static_cast<std::uint64_t>(data[2]) << 8 | data[3]) % 5000;
  const std::uint32_t seed = data[4] | 1u;
  const std::string wire(reinterpret_cast<const char*>(data) + 5, size - 5);
  const Outcome whole = run(framing, length, max_body, wire, 0);
  const Outcome split = run(framing, length, max_body, wire, seed);
  // What follows the body was read as far as the reads went: the split run saw a prefix of it.
  if (whole.status != split.status || whole.body != split.body || whole.rest.compare(0, split.rest.size(), split.rest) != 0) std::abort();
  if (whole.status == BodyReader::Status::done && framing == BodyReader::Framing::length && whole.body.size() != length) std::abort();
  return 0;
}
