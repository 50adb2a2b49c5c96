# Compiler flags every confman target gets.
add_library(confman_warnings INTERFACE)
target_compile_options(confman_warnings INTERFACE
  $<$<CXX_COMPILER_ID:GNU,Clang>:-Wall -Wextra -Werror>)

if(CONFMAN_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# Adds a Catch2 test executable registered with CTest under `LABEL`.
# Usage: confman_add_test(NAME name LABEL unit SOURCES a.cc b.cc LIBS x y
#                         [ARGS ...] [TIMEOUT seconds])
function(confman_add_test)
  cmake_parse_arguments(T "" "NAME;LABEL;TIMEOUT" "SOURCES;LIBS;ARGS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} confman_catch_main
                        confman_warnings)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME} ${T_ARGS})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABEL}"
                       TIMEOUT ${T_TIMEOUT})
endfunction()
