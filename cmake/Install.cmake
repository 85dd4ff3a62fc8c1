# Install rules beyond the programs, man pages and completions (which their
# own directories install): the integration files in contrib/, the example
# configs in examples/, and the documentation a package carries.
#
# Layout (relative to the install prefix; GNUInstallDirs names):
#   sbin/ vwatch vrebootgate vrebuild       bin/ vcheck vlock vunlock
#   share/man/man{1,5,8}/                    share/bash-completion/completions/
#   share/zsh/vendor-completions/            share/fish/vendor_completions.d/
#   lib/systemd/system/*.service             (VOLWATCH_SYSTEMD_UNIT_DIR)
#   share/doc/volwatch/{README.md,copyright,schema/,contrib/,examples/}
#   /etc/grub.d/42_volwatch                  (VOLWATCH_GRUB_DROPIN_DIR, absolute)
# docs/packaging.md explains the choices.
include_guard(GLOBAL)

set(VOLWATCH_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "Where the systemd units go: relative to the install prefix, absolute, or empty for none")

# volwatch_install_with_paths(DESTINATION DIR [EXECUTABLE] FILES F...)
# Installs each file (mode 0644, 0755 with EXECUTABLE) with its program paths (/usr/sbin/vwatch,
# /usr/local/sbin/vrebootgate, ...) rewritten to where this installation puts
# the programs. The rewrite runs at install time, so `cmake --install
# --prefix P` and CPack (which installs with its own prefix) both get units
# that name the binaries they ship. DIR may be relative to the prefix. The
# program lists follow tools/CMakeLists.txt; tests/cli/install.bats checks
# that every program path in an installed file exists in the installed tree.
function(volwatch_install_with_paths)
  cmake_parse_arguments(ARG "EXECUTABLE" "DESTINATION" "FILES" ${ARGN})
  foreach(file IN LISTS ARG_FILES)
    get_filename_component(source ${file} ABSOLUTE)
    install(CODE "set(VOLWATCH_PATHS_SOURCE [==[${source}]==])
set(VOLWATCH_PATHS_DESTINATION [==[${ARG_DESTINATION}]==])
set(VOLWATCH_PATHS_EXECUTABLE ${ARG_EXECUTABLE})
set(VOLWATCH_PATHS_STAGING [==[${PROJECT_BINARY_DIR}/install-with-paths]==])
set(VOLWATCH_PATHS_BINDIR [==[${CMAKE_INSTALL_BINDIR}]==])
set(VOLWATCH_PATHS_SBINDIR [==[${CMAKE_INSTALL_SBINDIR}]==])
set(VOLWATCH_PATHS_BIN_PROGRAMS vcheck vlock vunlock)
set(VOLWATCH_PATHS_SBIN_PROGRAMS vwatch vrebootgate vrebuild)")
    install(SCRIPT ${PROJECT_SOURCE_DIR}/cmake/install_with_paths.cmake)
  endforeach()
endfunction()

add_subdirectory(${PROJECT_SOURCE_DIR}/contrib ${PROJECT_BINARY_DIR}/contrib)
add_subdirectory(${PROJECT_SOURCE_DIR}/examples ${PROJECT_BINARY_DIR}/examples)

# The documentation a system package carries: the README, the JSON Schemas
# the man pages point to, and a copyright file (Debian policy 12.5).
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/docs/events.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
file(GLOB VOLWATCH_SCHEMAS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/schema/*.json)
install(FILES ${VOLWATCH_SCHEMAS} DESTINATION ${CMAKE_INSTALL_DOCDIR}/schema)
string(TIMESTAMP VOLWATCH_COPYRIGHT_YEAR "%Y" UTC)  # honours SOURCE_DATE_EPOCH
file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/copyright @ONLY CONTENT
"volwatch ${PROJECT_VERSION}: ${PROJECT_DESCRIPTION}

Copyright ${VOLWATCH_COPYRIGHT_YEAR} the volwatch developers
License: not yet chosen. Until the project publishes a licence, no rights
 beyond those of the law are granted; see the project's README.
")
install(FILES ${PROJECT_BINARY_DIR}/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR})
