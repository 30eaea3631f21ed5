# One version string for every binary: `git describe` when the source is a git checkout,
# else the project version. Re-evaluated when HEAD moves.
set(KVC_VERSION_STRING ${PROJECT_VERSION})
find_package(Git QUIET)
if(GIT_FOUND AND EXISTS ${CMAKE_SOURCE_DIR}/.git)
  execute_process(
    COMMAND ${GIT_EXECUTABLE} describe --tags --always --dirty
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
    OUTPUT_VARIABLE KVC_GIT_DESCRIBE OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE KVC_GIT_RESULT ERROR_QUIET)
  if(KVC_GIT_RESULT EQUAL 0 AND KVC_GIT_DESCRIBE)
    if(KVC_GIT_DESCRIBE MATCHES "^v?[0-9]")
      set(KVC_VERSION_STRING ${KVC_GIT_DESCRIBE})
    else()
      set(KVC_VERSION_STRING "${PROJECT_VERSION}-g${KVC_GIT_DESCRIBE}")
    endif()
  endif()
  foreach(f HEAD logs/HEAD)
    if(EXISTS ${CMAKE_SOURCE_DIR}/.git/${f})
      set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/.git/${f})
    endif()
  endforeach()
endif()
message(STATUS "kvc version ${KVC_VERSION_STRING}")
