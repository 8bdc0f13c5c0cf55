#pragma once
#include <string>

namespace lastgood::watchdog {
// The approval page served at GET /: HTML, CSS and JS in one document, no external assets.
extern const char* const kApprovalPage;
// The same served as HTML, stylesheet and script (no inline code: the CSP is default-src 'self').
const std::string& page_html();
const std::string& page_css();
const std::string& page_js();
}
