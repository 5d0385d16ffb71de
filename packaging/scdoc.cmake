# Turns one scdoc page into roff:
#   cmake -DSCDOC=scdoc -DIN=page.scd -DOUT=page -DVERSION=x.y.z -P scdoc.cmake
# @VERSION@ in the page becomes the project's version. Writes OUT.tmp and
# renames it, so that a page scdoc rejects leaves no empty OUT that make
# would take as up to date.
cmake_minimum_required(VERSION 3.18)
file(READ ${IN} text)
string(REPLACE "@VERSION@" "${VERSION}" text "${text}")
file(WRITE ${OUT}.scd.tmp "${text}")
execute_process(COMMAND ${SCDOC}
  INPUT_FILE ${OUT}.scd.tmp
  OUTPUT_FILE ${OUT}.tmp
  ERROR_VARIABLE err
  RESULT_VARIABLE rc)
file(REMOVE ${OUT}.scd.tmp)
if(NOT rc EQUAL 0)
  file(REMOVE ${OUT}.tmp)
  message(FATAL_ERROR "scdoc ${IN}: ${err}")
endif()
file(RENAME ${OUT}.tmp ${OUT})
