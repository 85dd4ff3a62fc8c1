# Interface targets with our warnings and sanitizer settings. They are linked
# PRIVATE into our own targets only, so packagers' flags are never overridden.
option(VOLWATCH_WERROR "Treat warnings as errors (CI and developer builds)" OFF)
set(VOLWATCH_SANITIZE "" CACHE STRING "Sanitizers to build with, e.g. address,undefined")
option(VOLWATCH_BUILD_FUZZERS "Build libFuzzer targets (needs clang); instruments every target for them" OFF)

# A fuzz build instruments every target, volwatch_common (config.cpp and
# toml++) included, with coverage for libFuzzer and with ASan and UBSan: with
# only the harness instrumented, the fuzzer is blind inside the parser.
if(VOLWATCH_BUILD_FUZZERS)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "VOLWATCH_BUILD_FUZZERS needs clang (CXX=clang++), not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  if(NOT VOLWATCH_SANITIZE)
    set(VOLWATCH_SANITIZE address,undefined)
  endif()
endif()

add_library(volwatch_warnings INTERFACE)
target_compile_options(volwatch_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
  -Wcast-align -Wunused -Woverloaded-virtual -Wformat=2
  $<$<BOOL:${VOLWATCH_WERROR}>:-Werror>)

add_library(volwatch_sanitizers INTERFACE)
if(VOLWATCH_SANITIZE)
  target_compile_options(volwatch_sanitizers INTERFACE
    -fsanitize=${VOLWATCH_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(volwatch_sanitizers INTERFACE -fsanitize=${VOLWATCH_SANITIZE})
endif()
if(VOLWATCH_BUILD_FUZZERS)
  # Coverage for libFuzzer without its main(); only the fuzz targets link -fsanitize=fuzzer.
  target_compile_options(volwatch_sanitizers INTERFACE -fsanitize=fuzzer-no-link)
endif()

# How the programs are linked (DESIGN §10: `vlock VOL -- true` within 1.3
# times `flock FILE true`, whole process). A vlock run does little work of its
# own: with libstdc++, libfmt and libtomlplusplus as shared libraries, three
# quarters of its instructions went to the dynamic loader resolving their
# symbols. fmt and toml++ are compiled in (libcommon/CMakeLists.txt); then
#   static-pie  no shared library at all, not even libc, and no dynamic
#               loader; still position-independent (ASLR). The default. The
#               programs use nothing of glibc that needs dlopen (NSS, iconv,
#               locales), but a glibc security update needs a rebuild.
#   libc        libstdc++ and libgcc linked statically; libc shared.
#   shared      everything shared (forced with sanitizers: their runtimes
#               expect the shared libstdc++).
# Only the programs (tools/) are linked so; the tests and helpers are not.
set(VOLWATCH_PROGRAM_LINKING "static-pie" CACHE STRING "How the programs are linked: static-pie, libc or shared")
set_property(CACHE VOLWATCH_PROGRAM_LINKING PROPERTY STRINGS static-pie libc shared)
if(NOT VOLWATCH_PROGRAM_LINKING MATCHES "^(static-pie|libc|shared)$")
  message(FATAL_ERROR "VOLWATCH_PROGRAM_LINKING: expected static-pie, libc or shared, not \"${VOLWATCH_PROGRAM_LINKING}\"")
endif()
set(VOLWATCH_LINKING ${VOLWATCH_PROGRAM_LINKING})
if(VOLWATCH_SANITIZE)
  set(VOLWATCH_LINKING shared)
endif()
include(CheckCXXSourceCompiles)
include(CheckLinkerFlag)
set(VOLWATCH_LINK_CHECK_SOURCE "#include <iostream>\n#include <string>\nint main(int argc, char**) { std::cout << std::to_string(argc); }")
if(VOLWATCH_LINKING STREQUAL "static-pie")
  set(CMAKE_REQUIRED_FLAGS -fPIE)
  set(CMAKE_REQUIRED_LINK_OPTIONS -static-pie)
  check_cxx_source_compiles("${VOLWATCH_LINK_CHECK_SOURCE}" VOLWATCH_HAVE_STATIC_PIE)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(NOT VOLWATCH_HAVE_STATIC_PIE)
    message(STATUS "volwatch: the toolchain cannot link -static-pie (static libc and libstdc++ needed); linking the programs against a shared libc")
    set(VOLWATCH_LINKING libc)
  endif()
endif()
if(VOLWATCH_LINKING STREQUAL "libc")
  set(CMAKE_REQUIRED_LINK_OPTIONS -static-libstdc++ -static-libgcc)
  check_cxx_source_compiles("${VOLWATCH_LINK_CHECK_SOURCE}" VOLWATCH_HAVE_STATIC_LIBSTDCXX)
  unset(CMAKE_REQUIRED_LINK_OPTIONS)
  if(NOT VOLWATCH_HAVE_STATIC_LIBSTDCXX)
    message(STATUS "volwatch: no static libstdc++; linking the programs against the shared one")
    set(VOLWATCH_LINKING shared)
  endif()
endif()
# Smaller relocation tables (DT_RELR, glibc 2.36) and no unused sections of
# the static libraries: fewer pages to read and touch at start-up.
check_linker_flag(CXX "LINKER:-z,pack-relative-relocs" VOLWATCH_HAVE_PACK_RELATIVE_RELOCS)
add_library(volwatch_program_link INTERFACE)
# One section per function and object, so that --gc-sections drops what a
# program never reaches: without them it keeps whole object files, and
# vlock carried libblkid (helper_device.o) and its probe tables, 12 more page
# faults per run.
if(NOT VOLWATCH_LINKING STREQUAL "shared")
  add_compile_options(-ffunction-sections -fdata-sections)
endif()
if(VOLWATCH_LINKING STREQUAL "static-pie")
  target_compile_options(volwatch_program_link INTERFACE -fPIE)
  target_link_options(volwatch_program_link INTERFACE -static-pie)
elseif(VOLWATCH_LINKING STREQUAL "libc")
  target_link_options(volwatch_program_link INTERFACE -static-libstdc++ -static-libgcc LINKER:--as-needed)
endif()
if(NOT VOLWATCH_LINKING STREQUAL "shared")
  target_link_options(volwatch_program_link INTERFACE LINKER:-O1,--gc-sections
                      $<$<BOOL:${VOLWATCH_HAVE_PACK_RELATIVE_RELOCS}>:LINKER:-z,pack-relative-relocs>)
endif()
# The programs that link a shared library beyond libc (libsystemd for the
# journal: vwatch, vrebootgate) need the dynamic loader anyway: static-pie
# becomes libc for them. Both are long-running or once per shutdown, so the
# loader's start-up cost does not count against a target (DESIGN §10).
add_library(volwatch_logging_program_link INTERFACE)
if(NOT VOLWATCH_LINKING STREQUAL "shared")
  target_link_options(volwatch_logging_program_link INTERFACE -static-libstdc++ -static-libgcc LINKER:--as-needed
                      LINKER:-O1,--gc-sections
                      $<$<BOOL:${VOLWATCH_HAVE_PACK_RELATIVE_RELOCS}>:LINKER:-z,pack-relative-relocs>)
endif()
message(STATUS "volwatch: programs linked ${VOLWATCH_LINKING}")
