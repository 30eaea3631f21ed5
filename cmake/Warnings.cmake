# Warning flags and sanitizers for kvc's own targets (not for third-party code).
add_library(kvc_warnings INTERFACE)
# Designated initializers that rely on member defaults are idiomatic here; GCC warns on them.
target_compile_options(kvc_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow
                                             -Wno-missing-field-initializers)
if(KVC_WERROR)
  target_compile_options(kvc_warnings INTERFACE -Werror)
endif()

if(KVC_SANITIZE)
  string(REPLACE "," ";" _kvc_sans "${KVC_SANITIZE}")
  foreach(_san ${_kvc_sans})
    if(NOT _san MATCHES "^(address|undefined|thread|leak)$")
      message(FATAL_ERROR "KVC_SANITIZE: unknown sanitizer '${_san}'")
    endif()
  endforeach()
  add_compile_options(-fsanitize=${KVC_SANITIZE} -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=${KVC_SANITIZE})
  if(KVC_SANITIZE_FAST)
    # What sanitizers recommend (-O1) and what their reports need (file:line, -g1): compiles
    # in about half the time of -O2 -g. After the build type's flags, so these win. Without
    # UBSan's vptr check (dynamic-type checks of polymorphic objects: kvc downcasts none; ASan
    # still catches a use of a freed one), which costs ~18 % of the compile time of a
    # storage or server file (lib/kvc/storage/wal.cc: 18.5 s -> 14.9 s).
    add_compile_options(-O1 -g1)
    if(KVC_SANITIZE MATCHES "undefined")
      add_compile_options(-fno-sanitize=vptr)
    endif()
  endif()
endif()

if(KVC_LINE_TABLES)
  # Stack traces and sanitizer reports still name file:line; no variable or type information
  # (-g1 instead of -g: lib/kvc/server/engine.cc compiles in ~60 % of the time). After the
  # build type's flags, so it wins.
  add_compile_options(-g1)
endif()

if(KVC_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "KVC_FUZZ needs clang: CC=clang CXX=clang++ cmake -DKVC_FUZZ=ON ...")
  endif()
  # Instrument the library for coverage; fuzz binaries add the libFuzzer main themselves.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
