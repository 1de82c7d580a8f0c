# Settings and helpers shared by the top-level build and the GPU-only tree
# (tools/gpu): included by both after MTLA_ROOT, MTLA_TESTDATA_DIR and the
# packages (Threads, absl, OpenMP, GTest) are set up. MTLA_DEPS_PREFIX (GPU
# tree: Debian packages unpacked there) is searched before the system.

# Headers are included from the repository root ("engine/...", "kernels/...").
add_library(mtla_common INTERFACE)
target_include_directories(mtla_common INTERFACE ${MTLA_ROOT})
target_link_libraries(mtla_common INTERFACE absl::status absl::statusor absl::strings
                      absl::str_format)

# OpenBLAS built on OpenMP (Debian's libopenblas-openmp-dev), so BLAS calls and
# the CPU kernels' own parallel loops share one thread pool instead of fighting
# over the cores.
set(mtla_multiarch ${CMAKE_LIBRARY_ARCHITECTURE})
if(NOT mtla_multiarch)
  set(mtla_multiarch x86_64-linux-gnu)
endif()
find_library(MTLA_OPENBLAS_LIBRARY openblas
  PATHS ${MTLA_DEPS_PREFIX}/usr/lib/${mtla_multiarch}/openblas-openmp
        /usr/lib/${mtla_multiarch}/openblas-openmp NO_DEFAULT_PATH REQUIRED)
find_path(MTLA_OPENBLAS_INCLUDE cblas.h
  PATHS ${MTLA_DEPS_PREFIX}/usr/include/${mtla_multiarch}/openblas-openmp
        /usr/include/${mtla_multiarch}/openblas-openmp NO_DEFAULT_PATH REQUIRED)
add_library(mtla_openblas INTERFACE)
target_link_libraries(mtla_openblas INTERFACE ${MTLA_OPENBLAS_LIBRARY} OpenMP::OpenMP_CXX)
target_include_directories(mtla_openblas INTERFACE ${MTLA_OPENBLAS_INCLUDE})

add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-Wall> $<$<COMPILE_LANGUAGE:CXX>:-Wextra>
                    $<$<COMPILE_LANGUAGE:CXX>:-Wno-unused-parameter>)
# Tuned for the machine that builds it unless told otherwise (CI builds and runs
# on the same machine; the Docker image overrides this).
set(MTLA_CPU_ARCH "native" CACHE STRING "Value for -march= on the CPU backend (empty for none)")

enable_testing()
include(GoogleTest)

# Test binaries whose tests run several threads (engine thread, request
# streams, gRPC reactors): ctest label `threaded`, the ThreadSanitizer set
# (tools/sanitize.sh tsan; keep in sync with the `tsan` build preset).
set(MTLA_THREADED_TESTS engine_test scheduler_test server_integration_test speech_e2e_test
    call_timer_test call_limits_test fault_injection_test sigterm_load_test
    speech_encoder_worker_test)

# mtla_test(NAME SOURCES... DEPS... [FIXTURES...]): a GoogleTest binary
# registered with ctest (nothing in the fuzz build, MTLA_FUZZ); its tests
# require the ctest FIXTURES given (e.g. a model generated at test time).
function(mtla_test name)
  if(MTLA_FUZZ)
    return()
  endif()
  cmake_parse_arguments(T "" "" "SOURCES;DEPS;FIXTURES" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_DEPS} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_definitions(${name} PRIVATE MTLA_TESTDATA_DIR="${MTLA_TESTDATA_DIR}")
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  # OpenMP threads busy-wait by default; on a shared CPU (ctest -j, CI) that
  # starves the other test processes, so tests run with passive waiting.
  set(labels "")
  if(name IN_LIST MTLA_THREADED_TESTS)
    set(labels LABELS threaded)
  endif()
  set(fixtures "")
  if(T_FIXTURES)
    set(fixtures FIXTURES_REQUIRED "${T_FIXTURES}")
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 120
                       PROPERTIES ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE" ${labels} ${fixtures})
endfunction()

# The static libraries the CUDA backend plugin (a shared module) is linked
# from must be position-independent; call after they are all defined.
function(mtla_make_plugin_libraries_pic)
  if(MTLA_HAVE_CUDA)
    set_property(TARGET mtla_model mtla_model_cuda mtla_kernels_cpu mtla_kernels_cuda mtla_config
                 mtla_weights mtla_kv_cache PROPERTY POSITION_INDEPENDENT_CODE ON)
  endif()
endfunction()
