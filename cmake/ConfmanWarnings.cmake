# Compiler flags every confman target gets.
add_library(confman_warnings INTERFACE)
target_compile_options(confman_warnings INTERFACE
  $<$<CXX_COMPILER_ID:GNU,Clang>:-Wall -Wextra -Werror>)
# GCC 12 at -O3 reports impossible overlaps inside std::string's operator+
# (GCC bug 105329), which would fail every Release build; so the check
# is off for that compiler only.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND
   CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 12 AND
   CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(confman_warnings INTERFACE -Wno-restrict)
endif()

if(CONFMAN_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
if(CONFMAN_TSAN)
  if(CONFMAN_SANITIZE)
    message(FATAL_ERROR "CONFMAN_TSAN and CONFMAN_SANITIZE exclude each other")
  endif()
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
  # Asio's handler completion uses a standalone fence, which GCC reports as
  # unsupported under TSan; its queues hand handlers over under a mutex,
  # which TSan does see.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    add_compile_options(-Wno-tsan)
  endif()
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
