# One version string for every binary, the library and the wire handshake's software field:
# semver from project(), then the commit it was built from when the source is a git checkout:
# "0.1.0 (4e9c11a)", "0.1.0 (4e9c11a-dirty)" with uncommitted changes; "0.1.0" otherwise.
# The package (cmake/Packaging.cmake), the CMake package, kvc.pc and libkvc's file name carry the
# semver part. Re-evaluated when HEAD moves.
set(KVC_VERSION_STRING ${PROJECT_VERSION})
find_package(Git QUIET)
if(GIT_FOUND AND EXISTS ${CMAKE_SOURCE_DIR}/.git)
  # --match with a pattern no tag has: always the abbreviated commit, never a tag's name.
  execute_process(
    COMMAND ${GIT_EXECUTABLE} describe --always --dirty --abbrev=7 --match kvc-no-such-tag
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
    OUTPUT_VARIABLE KVC_GIT_COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE KVC_GIT_RESULT ERROR_QUIET)
  if(KVC_GIT_RESULT EQUAL 0 AND KVC_GIT_COMMIT)
    set(KVC_VERSION_STRING "${PROJECT_VERSION} (${KVC_GIT_COMMIT})")
  endif()
  foreach(f HEAD logs/HEAD)
    if(EXISTS ${CMAKE_SOURCE_DIR}/.git/${f})
      set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/.git/${f})
    endif()
  endforeach()
endif()
message(STATUS "kvc version ${KVC_VERSION_STRING}")
