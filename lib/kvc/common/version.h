// The build's version: "MAJOR.MINOR.PATCH (commit)" when built from a git checkout, else
// "MAJOR.MINOR.PATCH" (cmake/Version.cmake). One value for every binary, the library (kvc_version)
// and the wire handshake's software field.
#pragma once

namespace kvc {

const char* version();

}  // namespace kvc
