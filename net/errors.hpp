#pragma once
// Which errors are the watcher's own (design.md, Core types): lastgood's resource limits, not the
// target's doing. A probe that meets one reports `error` (inconclusive), never `fail`: a watcher
// out of descriptors must not roll back a healthy release.
#include <cerrno>

#include <boost/system/error_code.hpp>

namespace lastgood::net {

inline bool watcher_side(int err) {
  return err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS || err == EADDRNOTAVAIL;
}

inline bool watcher_side(const boost::system::error_code& ec) {
  return ec && ec.category() == boost::system::system_category() && watcher_side(ec.value());
}

}  // namespace lastgood::net
