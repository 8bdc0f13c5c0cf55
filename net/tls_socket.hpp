#pragma once
// A TLS client connection driven straight on its socket: OpenSSL reads and writes the socket's
// descriptor (SSL_set_fd, non-blocking), and when it wants to read or write the coroutine waits
// for the socket to be ready (async_wait). No buffers of its own: Asio's ssl::stream keeps two
// 17 KiB buffers of its own and a BIO pair of two more for its whole life, about 68 KiB a
// connection that no OpenSSL setting reaches (issue 21: 115 KiB per kept HTTPS probe). With
// SSL_MODE_RELEASE_BUFFERS an idle connection here holds the SSL object and its session only.
//
// One operation at a time (as HttpConnection uses it). Cancelling the socket (a deadline) ends a
// wait with operation_aborted. Errors are values: OpenSSL's as Asio's ssl category, an unexpected
// end of the stream as ssl::error::stream_truncated, a clean close_notify as eof.
#include <cstddef>
#include <tuple>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>
#include <openssl/ssl.h>

namespace lastgood::net {

class TlsSocket {
 public:
  // Takes the connected socket; the handshake is handshake()'s.
  TlsSocket(boost::asio::ip::tcp::socket&& socket, boost::asio::ssl::context& ctx);
  ~TlsSocket();
  TlsSocket(const TlsSocket&) = delete;
  TlsSocket& operator=(const TlsSocket&) = delete;

  // Null when OpenSSL could not make the connection's object (out of memory): the caller reports it.
  SSL* native_handle() { return ssl_; }
  boost::asio::ip::tcp::socket& next_layer() { return socket_; }

  boost::asio::awaitable<boost::system::error_code> handshake();
  // Some bytes into b (at least one), or an error.
  boost::asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(boost::asio::mutable_buffer b);
  // All of b, or an error.
  boost::asio::awaitable<boost::system::error_code> write_all(boost::asio::const_buffer b);

 private:
  enum class Want { none, read, write };
  // What OpenSSL's result r asks for: a wait, or an error (ec set).
  Want after(int r, boost::system::error_code& ec);
  boost::asio::awaitable<boost::system::error_code> wait(Want w);

  boost::asio::ip::tcp::socket socket_;
  SSL* ssl_ = nullptr;
};

}  // namespace lastgood::net
