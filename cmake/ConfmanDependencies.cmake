# Finds confman's dependencies, all from Debian packages
# (scripts/install-deps installs them).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(absl REQUIRED)

pkg_check_modules(LMDB REQUIRED IMPORTED_TARGET lmdb)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
find_package(FlatBuffers REQUIRED CONFIG)
find_program(FLATC flatc REQUIRED)

# Asio standalone is header-only.
find_path(ASIO_INCLUDE_DIR asio.hpp REQUIRED)
add_library(confman_asio INTERFACE)
target_include_directories(confman_asio SYSTEM INTERFACE ${ASIO_INCLUDE_DIR})
# Asio decides between aligned_alloc and operator new per translation unit,
# depending on what the C++ library headers included before it defined; its
# recycled handler memory can then be freed with the other family (an
# alloc-dealloc mismatch AddressSanitizer reports). Pin it to operator new.
target_compile_definitions(confman_asio INTERFACE ASIO_STANDALONE
                           ASIO_NO_DEPRECATED ASIO_DISABLE_STD_ALIGNED_ALLOC)
target_link_libraries(confman_asio INTERFACE Threads::Threads)

find_package(OpenSSL)

if(CONFMAN_BUILD_TESTS)
  find_package(Catch2 2 REQUIRED)
endif()
