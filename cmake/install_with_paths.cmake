# Install-time half of volwatch_install_with_paths (cmake/Install.cmake): runs
# inside cmake_install.cmake, where CMAKE_INSTALL_PREFIX is the prefix of this
# installation (`cmake --install --prefix`, or CPack's). Copies
# VOLWATCH_PATHS_SOURCE to VOLWATCH_PATHS_DESTINATION with every absolute
# path of a volwatch program replaced by where this installation puts it.
foreach(var SOURCE DESTINATION STAGING BINDIR SBINDIR BIN_PROGRAMS SBIN_PROGRAMS)
  if(NOT DEFINED VOLWATCH_PATHS_${var})
    message(FATAL_ERROR "install_with_paths.cmake: VOLWATCH_PATHS_${var} is not set")
  endif()
endforeach()

function(volwatch_full_path out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

volwatch_full_path(destination "${VOLWATCH_PATHS_DESTINATION}")
volwatch_full_path(bindir "${VOLWATCH_PATHS_BINDIR}")
volwatch_full_path(sbindir "${VOLWATCH_PATHS_SBINDIR}")

file(READ "${VOLWATCH_PATHS_SOURCE}" text)
# The sources name the programs as a Debian package installs them (/usr/sbin)
# or as a default build does (/usr/local/sbin, in the launchd plists).
foreach(program IN LISTS VOLWATCH_PATHS_SBIN_PROGRAMS)
  string(REGEX REPLACE "/usr(/local)?/s?bin/${program}([^A-Za-z0-9_.-]|$)" "${sbindir}/${program}\\2" text "${text}")
endforeach()
foreach(program IN LISTS VOLWATCH_PATHS_BIN_PROGRAMS)
  string(REGEX REPLACE "/usr(/local)?/s?bin/${program}([^A-Za-z0-9_.-]|$)" "${bindir}/${program}\\2" text "${text}")
endforeach()

get_filename_component(name "${VOLWATCH_PATHS_SOURCE}" NAME)
get_filename_component(parent "${VOLWATCH_PATHS_SOURCE}" DIRECTORY)
get_filename_component(parent "${parent}" NAME)
# One staging file per installation (prefix and DESTDIR) and source: two
# installs running at once (a test and cpack) never swap each other's text.
string(SHA1 installation "$ENV{DESTDIR}|${CMAKE_INSTALL_PREFIX}")
set(staged "${VOLWATCH_PATHS_STAGING}/${installation}/${parent}/${name}")
file(WRITE "${staged}" "${text}")
set(permissions OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
if(VOLWATCH_PATHS_EXECUTABLE)
  list(APPEND permissions OWNER_EXECUTE GROUP_EXECUTE WORLD_EXECUTE)
endif()
file(INSTALL DESTINATION "${destination}" TYPE FILE FILES "${staged}" PERMISSIONS ${permissions})
