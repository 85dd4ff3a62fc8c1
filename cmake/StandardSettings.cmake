# Interface targets with our warnings and sanitizer settings. They are linked
# PRIVATE into our own targets only, so packagers' flags are never overridden.
option(VOLWATCH_WERROR "Treat warnings as errors (CI and developer builds)" OFF)
set(VOLWATCH_SANITIZE "" CACHE STRING "Sanitizers to build with, e.g. address,undefined")

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
