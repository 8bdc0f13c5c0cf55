#include "watchdog/kinds.hpp"

#include "actions/action.hpp"
#include "probes/probe.hpp"

namespace lastgood {

const config::Kinds& kinds() {
  static const config::Kinds all{probes::kind_parsers(), actions::kind_parsers()};
  return all;
}

}  // namespace lastgood
