#pragma once
// TLS client contexts: peers verified against the system CA store (or a given bundle) by default.
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/ssl/context.hpp>

namespace lastgood::net {

struct TlsOptions {
  std::optional<std::string> ca_file;  // PEM bundle; default: the system CA store
  bool insecure_skip_verify = false;   // explicit opt-out; callers log it loudly
};
// An SSL context that verifies peers against the CA store or file. Throws on a bad CA file
// (checked at start-up, not on the loop).
std::shared_ptr<boost::asio::ssl::context> make_tls_context(const TlsOptions& opts);
// The context for these options, shared by every connection that asks for the same ones while
// any holds it (a probe's own context was an SSL_CTX and a parsed CA bundle per probe: at 1 000
// HTTPS probes with a ca_file, a thousand copies). Thread-safe.
std::shared_ptr<boost::asio::ssl::context> shared_tls_context(const TlsOptions& opts);
// The verifying context over the system CA store, built once: loading the store parses the whole
// CA bundle, not something to redo on the event loop for every request.
std::shared_ptr<boost::asio::ssl::context> default_tls_context();

// TLS handshakes made by HTTP connections in this process, and how many resumed a session
// (for /metrics: lastgood_probe_tls_handshakes_total).
struct TlsCounts {
  std::atomic<std::uint64_t> full{0}, resumed{0};
};
extern TlsCounts g_tls_handshakes;

}  // namespace lastgood::net
