# Installs the libraries, public headers and a CMake package, so a host
# project can do find_package(confman) and link confman::node (and
# confman::testing for its own tests).
include(CMakePackageConfigHelpers)

set(CONFMAN_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/confman)

# Static libraries carry their private link dependencies into the export,
# so the helper interface targets travel with them.
set(confman_installed_targets confman_warnings confman_asio)
foreach(target confman_common confman_raft confman_storage confman_kv
               confman_transport confman_default_transport confman_node_core
               confman_node confman_testing)
  if(TARGET ${target})
    list(APPEND confman_installed_targets ${target})
    # confman_node is imported as confman::node, and so on.
    string(REPLACE "confman_" "" export_name ${target})
    set_target_properties(${target} PROPERTIES EXPORT_NAME ${export_name})
  endif()
endforeach()

install(TARGETS ${confman_installed_targets}
  EXPORT confmanTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/confman
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(EXPORT confmanTargets
  NAMESPACE confman::
  DESTINATION ${CONFMAN_INSTALL_CMAKEDIR})

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/confmanConfig.cmake.in
  ${PROJECT_BINARY_DIR}/confmanConfig.cmake
  INSTALL_DESTINATION ${CONFMAN_INSTALL_CMAKEDIR})
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/confmanConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/confmanConfig.cmake
  ${PROJECT_BINARY_DIR}/confmanConfigVersion.cmake
  DESTINATION ${CONFMAN_INSTALL_CMAKEDIR})
