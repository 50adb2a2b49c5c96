# Every public header must compile on its own: for each one, a translation
# unit that includes it first and nothing else. A header that leans on
# something its includer happened to include first breaks this build.
file(GLOB_RECURSE CONFMAN_PUBLIC_HEADERS RELATIVE "${PROJECT_SOURCE_DIR}/include"
     CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/include/confman/*.h")
set(CONFMAN_HEADER_CHECK_SOURCES)
foreach(header ${CONFMAN_PUBLIC_HEADERS})
  string(MAKE_C_IDENTIFIER "${header}" unit)
  set(source "${CMAKE_CURRENT_BINARY_DIR}/header_check/${unit}.cc")
  file(CONFIGURE OUTPUT "${source}"
       CONTENT "#include \"${header}\"  // First and alone: it must stand on its own.\n")
  list(APPEND CONFMAN_HEADER_CHECK_SOURCES "${source}")
endforeach()
add_library(confman_header_check OBJECT ${CONFMAN_HEADER_CHECK_SOURCES})
# The libraries only lend their include paths and definitions.
target_link_libraries(confman_header_check PRIVATE
  confman_node confman_testing confman_default_transport)
