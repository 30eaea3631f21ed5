// The build's version string: `git describe` of the source when built from git, else the
// project version. One value for every binary and for the wire handshake's software field.
#pragma once

namespace kvc {

const char* version();

}  // namespace kvc
