# Finds kvc's dependencies as Debian 12 packages install them (scripts/install-deps).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

find_package(CLI11 CONFIG QUIET)
if(NOT TARGET CLI11::CLI11)
  find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  set_target_properties(CLI11::CLI11 PROPERTIES INTERFACE_INCLUDE_DIRECTORIES ${CLI11_INCLUDE_DIR})
endif()

pkg_check_modules(LIBUV REQUIRED IMPORTED_TARGET libuv)

# libssl for TLS, libcrypto for the PSK derivation (HMAC-SHA-256): net/tls.cc. Debian 12: 3.0.
find_package(OpenSSL 3 REQUIRED)

find_package(msgpack CONFIG REQUIRED NAMES msgpack msgpackc-cxx)
# msgpack-c can use Boost for a few optional adaptors; kvc does not, which keeps compiles fast.
add_library(kvc_msgpack INTERFACE)
target_link_libraries(kvc_msgpack INTERFACE msgpackc-cxx)
target_compile_definitions(kvc_msgpack INTERFACE MSGPACK_NO_BOOST)

find_path(LMDB_INCLUDE_DIR lmdb.h REQUIRED)
find_library(LMDB_LIBRARY lmdb REQUIRED)
add_library(kvc_lmdb INTERFACE)
target_include_directories(kvc_lmdb SYSTEM INTERFACE ${LMDB_INCLUDE_DIR})
target_link_libraries(kvc_lmdb INTERFACE ${LMDB_LIBRARY})

find_package(spdlog CONFIG REQUIRED)

# Header-only; used by common/json.cc alone (the one JSON reader), never in a public header.
find_package(nlohmann_json 3.11 CONFIG REQUIRED)

if(KVC_BUILD_TESTS)
  find_package(GTest CONFIG REQUIRED)
  include(GoogleTest)
endif()

set(KVC_LLHTTP_SOURCE_DIR /usr/share/llhttp CACHE PATH "llhttp C sources (Debian node-llhttp)")
set(KVC_LLHTTP_INCLUDE_DIR /usr/share/include/llhttp CACHE PATH "llhttp.h (Debian node-llhttp)")
if(NOT EXISTS ${KVC_LLHTTP_SOURCE_DIR}/llhttp.c OR NOT EXISTS ${KVC_LLHTTP_INCLUDE_DIR}/llhttp.h)
  message(FATAL_ERROR "llhttp sources not found in ${KVC_LLHTTP_SOURCE_DIR}: "
                      "run scripts/install-deps (Debian package node-llhttp)")
endif()
