#pragma once
// The probe and deployment kinds lastgood accepts: the rows of probes/ and actions/ (each kind's
// parser and factory in one file), handed to config::load_file / load_text.
#include "config/config.hpp"

namespace lastgood {

const config::Kinds& kinds();

}  // namespace lastgood
