// The JSON reader the HTTP API uses for PUT bodies (Content-Type: application/json) and its
// tests use for answers: kvc::parse_json of common/json.h, under the names http/ has always
// used. Thread-safe.
#pragma once

#include "kvc/common/json.h"

namespace kvc::http {

using kvc::JsonMember;
using kvc::JsonValue;
using kvc::parse_json;

}  // namespace kvc::http
