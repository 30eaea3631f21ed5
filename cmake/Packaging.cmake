# `cpack -G DEB` in a build directory makes a .deb with the binaries (stripped: the debug info
# goes to a kvc-dbgsym .ddeb, CPACK_DEBIAN_DEBUGINFO_PACKAGE, which strips them), man pages,
# completions and the service (the systemd template kvc-node@.service, a sample config, the kvc
# system user made by postinst), plus a -dbgsym package with the debug symbols. Checked with
# lintian (docs/packaging.md lists what it still says and why).
set(CPACK_PACKAGE_NAME kvc)
set(CPACK_PACKAGE_VENDOR "kvc developers")
set(CPACK_PACKAGE_CONTACT "kvc developers <kvc@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_DESCRIPTION
    "kvc is a Raft-replicated metadata store that cluster controllers embed,
or run as a small cluster, instead of depending on an external etcd or
ZooKeeper. This package has the member kvc-node (with a systemd service
template), the admin and data command kvc-ctl, and the offline tools
kvc-wal and kvc-snap for a member's log and snapshots.")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_DEBUGINFO_PACKAGE ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)

# Three packages, as Debian splits a library (docs/packaging.md): kvc (everything not in a named
# component: binaries, man pages, the service), libkvc<major.minor> (the shared library alone,
# named after its SONAME) and libkvc-dev (headers, libkvc.so, libkvc.a, the CMake package,
# kvc.pc). Each gets its -dbgsym .ddeb.
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL Unspecified library development)
set(KVC_LIB_PACKAGE libkvc${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_NAME kvc)
set(CPACK_DEBIAN_UNSPECIFIED_FILE_NAME DEB-DEFAULT)
# Each package's synopsis is CPACK_PACKAGE_DESCRIPTION_SUMMARY (CPack puts it first); these are
# the bodies.
set(CPACK_DEBIAN_UNSPECIFIED_DESCRIPTION "${CPACK_PACKAGE_DESCRIPTION}")
# The service's user and /etc/kvc (dist/debian/postinst); only kvc has them.
set(CPACK_DEBIAN_UNSPECIFIED_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/dist/debian/postinst ${PROJECT_SOURCE_DIR}/dist/debian/postrm)
# libkvc0.1 gets a shlibs file and the ldconfig trigger (dist/debian/libkvc/triggers), which
# Debian prefers to maintainer scripts that run ldconfig: CPack writes those only for a package
# without its own, so it has ones that do nothing.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_LIBRARY_PACKAGE_CONTROL_EXTRA ${PROJECT_SOURCE_DIR}/dist/debian/libkvc/triggers
    ${PROJECT_SOURCE_DIR}/dist/debian/libkvc/postinst ${PROJECT_SOURCE_DIR}/dist/debian/libkvc/postrm)
set(CPACK_DEBIAN_LIBRARY_PACKAGE_NAME ${KVC_LIB_PACKAGE})
set(CPACK_DEBIAN_LIBRARY_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_LIBRARY_DESCRIPTION
    "libkvc embeds a member of a kvc cluster in a program, or talks to a
cluster over the network, through a C interface (kvc/kvc.h) and a C++
one. This package has the shared library.")
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME libkvc-dev)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEVELOPMENT_DESCRIPTION
    "libkvc embeds a member of a kvc cluster in a program, or talks to a
cluster over the network, through a C interface (kvc/kvc.h) and a C++
one. This package has the headers, the static library, a CMake package
(find_package(kvc)) and a pkg-config file (kvc.pc).")
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS
    "${KVC_LIB_PACKAGE} (= ${PROJECT_VERSION}), libuv1-dev, liblmdb-dev, libspdlog-dev, libssl-dev, libmsgpack-cxx-dev")
include(CPack)
