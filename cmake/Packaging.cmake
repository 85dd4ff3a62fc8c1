# A Debian package with CPack: `cpack -G DEB` in the build directory writes
# volwatch_<version>_<arch>.deb. The package holds exactly what
# `cmake --install --prefix /usr` installs (cmake/Install.cmake), with
# stripped binaries and compressed man pages. docs/packaging.md explains the
# choices and lists what lintian still says.
#
# What the package deliberately does not do: it has no maintainer scripts, so
# installing it enables and starts nothing (the units wait for `systemctl
# enable --now`), creates no user, group or directory, and ships in /etc only
# the GRUB drop-in, a conffile (no host config: volwatch runs on its built-in
# defaults until the administrator writes /etc/volwatch/volwatch.toml, for
# which share/doc/volwatch/examples has models).
include_guard(GLOBAL)

set(CPACK_PACKAGE_NAME volwatch)
set(CPACK_PACKAGE_VENDOR "the volwatch developers")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "keep boot caches consistent with their sources")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
if(NOT CPACK_GENERATOR)
  set(CPACK_GENERATOR DEB)
endif()

set(VOLWATCH_DEB_MAINTAINER "the volwatch developers <volwatch@volwatch.invalid>" CACHE STRING
    "The Maintainer field of the Debian package (Name <address>)")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${VOLWATCH_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# Dependencies come from the programs' shared libraries (dpkg-shlibdeps), never
# from a hand-written list that drifts when the link changes.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# The long description; CPack puts CPACK_PACKAGE_DESCRIPTION_SUMMARY first as
# the synopsis and indents the rest.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "volwatch keeps derived boot caches (initramfs images, the module index, the
dynamic linker cache, the GRUB configuration, font and MIME caches) and their
copies on helper partitions such as a second EFI system partition consistent
with their sources, and holds shutdown and unmount until they are.
.
It is six small programs over one library: vwatch (the watcher daemon),
vcheck (a read-only staleness report, also for Prometheus), vrebuild,
vlock and vunlock (per-volume locks for scripts) and vrebootgate (a shutdown
hook). Nothing is enabled on installation; see
/usr/share/doc/volwatch/README.md and the examples beside it.")

# dh_compress and dh_installchangelogs, in CPack's staging tree: man pages
# and the changelog gzipped with -9n (no name or time stamp: reproducible).
# string(TIMESTAMP) honours SOURCE_DATE_EPOCH.
string(TIMESTAMP VOLWATCH_CHANGELOG_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/packaging/changelog @ONLY CONTENT
"volwatch (@PROJECT_VERSION@) unstable; urgency=medium

  * Upstream release @PROJECT_VERSION@, packaged with CPack.

 -- @VOLWATCH_DEB_MAINTAINER@  @VOLWATCH_CHANGELOG_DATE@
")
file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/packaging/deb_staging.cmake @ONLY CONTENT
[==[# Generated from cmake/Packaging.cmake: runs in CPack's staging tree.
find_program(GZIP gzip REQUIRED)
file(GLOB_RECURSE pages "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/usr/share/man/*")
foreach(page IN LISTS pages)
  if(NOT page MATCHES "\\.gz$")
    execute_process(COMMAND ${GZIP} -9nf "${page}" COMMAND_ERROR_IS_FATAL ANY)
  endif()
endforeach()
set(doc "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/usr/share/doc/volwatch")
file(COPY "@PROJECT_BINARY_DIR@/packaging/changelog" DESTINATION "${doc}")
execute_process(COMMAND ${GZIP} -9nf "${doc}/changelog" COMMAND_ERROR_IS_FATAL ANY)
]==])
# The one file in /etc: the GRUB drop-in (contrib/CMakeLists.txt), a conffile
# so that an administrator's edit (or removal, to drop the entries) survives
# upgrades. CPack installs into its staging tree through DESTDIR, which an
# absolute destination needs.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX ${CPACK_PACKAGING_INSTALL_PREFIX})
if(IS_ABSOLUTE "${VOLWATCH_GRUB_DROPIN_DIR}" AND VOLWATCH_GRUB_DROPIN_DIR MATCHES "^/etc/")
  file(WRITE ${PROJECT_BINARY_DIR}/packaging/conffiles "${VOLWATCH_GRUB_DROPIN_DIR}/42_volwatch\n")
  set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${PROJECT_BINARY_DIR}/packaging/conffiles)
endif()
set(CPACK_PRE_BUILD_SCRIPTS ${PROJECT_BINARY_DIR}/packaging/deb_staging.cmake)

include(CPack)
