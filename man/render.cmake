# Expands "#include NAME" lines (shared sections in man/include/NAME.scd) and
# runs scdoc on the result.
file(READ ${SRC} text)
file(GLOB includes ${INCLUDE_DIR}/*.scd)
foreach(inc IN LISTS includes)
  get_filename_component(name ${inc} NAME_WE)
  file(READ ${inc} body)
  string(REPLACE "#include ${name}\n" "${body}" text "${text}")
endforeach()
file(WRITE ${OUT}.scd "${text}")
execute_process(COMMAND ${SCDOC} INPUT_FILE ${OUT}.scd OUTPUT_FILE ${OUT} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "scdoc failed on ${SRC}")
endif()
