#include "net/tls_socket.hpp"

#include <cerrno>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <openssl/err.h>

namespace lastgood::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

TlsSocket::TlsSocket(tcp::socket&& socket, asio::ssl::context& ctx) : socket_(std::move(socket)) {
  error_code ignored;
  socket_.non_blocking(true, ignored);  // OpenSSL reads and writes the descriptor itself
  ssl_ = ::SSL_new(ctx.native_handle());
  if (!ssl_) return;
  // As Asio's engine: a write may end part-way (write_all goes on from there), and its buffer
  // may move between tries.
  ::SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  if (::SSL_set_fd(ssl_, socket_.native_handle()) != 1) {
    ::SSL_free(ssl_);
    ssl_ = nullptr;
    return;
  }
  ::SSL_set_connect_state(ssl_);
}

TlsSocket::~TlsSocket() {
  if (ssl_) ::SSL_free(ssl_);  // before the socket closes (members go after the body)
}

TlsSocket::Want TlsSocket::after(int r, error_code& ec) {
  const int saved_errno = errno;
  const int e = ::SSL_get_error(ssl_, r);
  switch (e) {
    case SSL_ERROR_WANT_READ: return Want::read;
    case SSL_ERROR_WANT_WRITE: return Want::write;
    case SSL_ERROR_ZERO_RETURN:  // the peer's close_notify
      ec = asio::error::eof;
      return Want::none;
    case SSL_ERROR_SYSCALL:
      if (const unsigned long err = ::ERR_get_error(); err != 0) ec = error_code(static_cast<int>(err), asio::error::get_ssl_category());
      else if (saved_errno != 0) ec = error_code(saved_errno, boost::system::system_category());
      else ec = asio::ssl::error::stream_truncated;  // the peer closed without close_notify
      ::ERR_clear_error();
      return Want::none;
    default: {
      const unsigned long err = ::ERR_get_error();
      ::ERR_clear_error();
      if (ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING) ec = asio::ssl::error::stream_truncated;
      else if (err != 0) ec = error_code(static_cast<int>(err), asio::error::get_ssl_category());
      else ec = asio::error::fault;
      return Want::none;
    }
  }
}

asio::awaitable<error_code> TlsSocket::wait(Want w) {
  auto [ec] = co_await socket_.async_wait(w == Want::read ? tcp::socket::wait_read : tcp::socket::wait_write,
                                          asio::as_tuple(asio::use_awaitable));
  co_return ec;
}

asio::awaitable<error_code> TlsSocket::handshake() {
  if (!ssl_) co_return asio::error::no_memory;
  for (;;) {
    ::ERR_clear_error();
    errno = 0;
    const int r = ::SSL_do_handshake(ssl_);
    if (r == 1) co_return error_code{};
    error_code ec;
    const Want w = after(r, ec);
    if (w == Want::none) co_return ec;
    if (auto wec = co_await wait(w)) co_return wec;
  }
}

asio::awaitable<std::tuple<error_code, std::size_t>> TlsSocket::read_some(asio::mutable_buffer b) {
  if (!ssl_) co_return std::tuple<error_code, std::size_t>{asio::error::no_memory, 0};
  for (;;) {
    std::size_t n = 0;
    ::ERR_clear_error();
    errno = 0;
    const int r = ::SSL_read_ex(ssl_, b.data(), b.size(), &n);
    if (r == 1) co_return std::tuple<error_code, std::size_t>{error_code{}, n};
    error_code ec;
    const Want w = after(r, ec);
    if (w == Want::none) co_return std::tuple<error_code, std::size_t>{ec, 0};
    if (auto wec = co_await wait(w)) co_return std::tuple<error_code, std::size_t>{wec, 0};
  }
}

asio::awaitable<error_code> TlsSocket::write_all(asio::const_buffer b) {
  if (!ssl_) co_return asio::error::no_memory;
  const char* p = static_cast<const char*>(b.data());
  std::size_t left = b.size();
  while (left > 0) {
    std::size_t n = 0;
    ::ERR_clear_error();
    errno = 0;
    const int r = ::SSL_write_ex(ssl_, p, left, &n);
    if (r == 1) {
      p += n;
      left -= n;
      continue;
    }
    error_code ec;
    const Want w = after(r, ec);
    if (w == Want::none) co_return ec;
    if (auto wec = co_await wait(w)) co_return wec;
  }
  co_return error_code{};
}

}  // namespace lastgood::net
