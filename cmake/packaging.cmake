# Debian package: `cpack -G DEB` in a build directory makes cachecar_<version>_<arch>.deb.
#
# What goes in, and from where:
#   /usr/bin/cachecar                   install(TARGETS cachecar ...) in the top-level file
#   /etc/cachecar/cachecar.yaml         conf/cachecar.yaml, a dpkg conffile
#   /lib/systemd/system/cachecar.service systemd/cachecar.service
#   /usr/share/doc/cachecar/README.md   the unit's Documentation=
#   DEBIAN/{postinst,prerm,postrm}      systemd/debian/ (system user, daemon-reload, stop)
#
# The config and the unit have absolute destinations (the unit names /usr/bin and
# /etc/cachecar literally), so they are a separate EXCLUDE_FROM_ALL component
# `system`: a plain `cmake --install build --prefix ~/x` still installs just the
# binary and needs no root. The package is built from both components, in one .deb.
# Test targets install nothing; .ci/check-package.sh fails on any unexpected file.

set(CACHECAR_PACKAGE_MAINTAINER "cachecar maintainers <maintainers@users.noreply.h-seed-f88287a8.example>"
  CACHE STRING "Maintainer field of the Debian package")

install(FILES ${CMAKE_SOURCE_DIR}/conf/cachecar.yaml
  DESTINATION /etc/cachecar COMPONENT system EXCLUDE_FROM_ALL)
install(FILES ${CMAKE_SOURCE_DIR}/systemd/cachecar.service
  DESTINATION /lib/systemd/system COMPONENT system EXCLUDE_FROM_ALL)
install(FILES ${CMAKE_SOURCE_DIR}/README.md
  DESTINATION /usr/share/doc/cachecar COMPONENT system EXCLUDE_FROM_ALL)

# Relative destinations (the binary's `bin`) land under /usr in the package.
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_NAME cachecar)
set(CPACK_PACKAGE_VENDOR cachecar)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${CACHECAR_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "caching reverse proxy for HTTP APIs")
set(CPACK_PACKAGE_DESCRIPTION
  "cachecar sits in front of an unmodified HTTP API, answers reads from its cache \
tiers (in-process memory, Redis, MongoDB) according to a YAML route matrix, and \
purges cached entries by category when writes succeed. The package installs the \
binary, a memory-only default configuration in /etc/cachecar and a hardened \
systemd unit (Type=notify, watchdog) running as the system user cachecar.")
set(CPACK_STRIP_FILES ON)

# Unspecified = the binary (the top-level install() names no component).
set(CPACK_COMPONENTS_ALL Unspecified system)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)

set(CPACK_DEBIAN_PACKAGE_NAME cachecar)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CACHECAR_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION web)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies come from dpkg-shlibdeps on the binary; postinst needs adduser.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_SOURCE_DIR}/systemd/debian/conffiles
  ${CMAKE_SOURCE_DIR}/systemd/debian/postinst
  ${CMAKE_SOURCE_DIR}/systemd/debian/prerm
  ${CMAKE_SOURCE_DIR}/systemd/debian/postrm)
# Scripts 0755, conffiles 0644, whatever the checkout's modes are.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
