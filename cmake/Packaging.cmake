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
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/dist/debian/postinst ${PROJECT_SOURCE_DIR}/dist/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
include(CPack)
