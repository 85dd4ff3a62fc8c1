# Expands "#include NAME" lines (shared sections in man/include/NAME.scd) and
# runs scdoc on the result.
file(READ ${SRC} text)
file(GLOB includes ${INCLUDE_DIR}/*.scd)
foreach(inc IN LISTS includes)
  get_filename_component(name ${inc} NAME_WE)
  file(READ ${inc} body)
  string(REPLACE "#include ${name}\n" "${body}" text "${text}")
endforeach()
if(text MATCHES "(^|\n)#include ([^\n]*)")
  message(FATAL_ERROR "${SRC}: #include ${CMAKE_MATCH_2}: no such file ${INCLUDE_DIR}/${CMAKE_MATCH_2}.scd")
endif()
file(WRITE ${OUT}.scd "${text}")
execute_process(COMMAND ${SCDOC} INPUT_FILE ${OUT}.scd OUTPUT_VARIABLE roff RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "scdoc failed on ${SRC} (line numbers refer to ${OUT}.scd, the source with its includes expanded)")
endif()

# scdoc puts a paragraph macro after every heading, before every heading and
# at the end of every indented block, and mandoc -Tlint warns about each one
# that does nothing ("skipping paragraph macro"). Drop or move those, so the
# lint in tests/cli/docs.bats reports only real problems. The typeset page is
# the same: a paragraph break before .RE is moved after it, where it still
# separates the next list entry.
set(previous "")
while(NOT roff STREQUAL previous)
  set(previous "${roff}")
  string(REGEX REPLACE "\n\\.P\n\\.RE\n" "\n.RE\n.P\n" roff "${roff}")
  string(REGEX REPLACE "\n\\.P\n(\\.(SH|SS|P)[\n ])" "\n\\1" roff "${roff}")
  string(REGEX REPLACE "(\n\\.S[HS] [^\n]*)\n\\.P\n" "\\1\n" roff "${roff}")
endwhile()
file(WRITE ${OUT} "${roff}")
