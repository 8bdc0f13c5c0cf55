// The HTTP response head parser both request paths use (status line, fields, Content-Length,
// Transfer-Encoding, Connection), on any header block a target may send.
#include <cstddef>
#include <cstdint>
#include <string>

#include "net/http_wire.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string block(reinterpret_cast<const char*>(data), size);
  if (block.size() < 4 || block.compare(block.size() - 4, 4, "\r\n\r\n") != 0) block += "\r\n\r\n";  // complete, as the reader hands it over
  (void)lastgood::net::check_response_head(block);
  return 0;
}
