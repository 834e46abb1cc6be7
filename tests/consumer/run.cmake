# ctest package_consumer: install the build into a temporary prefix, then configure, build and
# run tests/consumer against it with find_package(detcore), and check the pkg-config files.
#   cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -DWITH_FORTRAN=ON|OFF [-DPKG_CONFIG=...]
#         [-DFORTRAN_COMPILER=...] -P run.cmake
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("$ ${ARGN}\n${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

# Installed in one place, then moved: the CMake package and the .pc files must follow.
run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${WORK_DIR}/installed-here")
file(RENAME "${WORK_DIR}/installed-here" "${prefix}")
run("${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" "-DCMAKE_PREFIX_PATH=${prefix}"
    "-DWITH_FORTRAN=${WITH_FORTRAN}" -DCMAKE_BUILD_TYPE=Release)
run("${CMAKE_COMMAND}" --build "${WORK_DIR}/build")
set(programs consumer_c consumer_cpp consumer_static)
if(WITH_FORTRAN)
  list(APPEND programs consumer_fortran)
endif()
foreach(p ${programs})
  file(MAKE_DIRECTORY "${WORK_DIR}/run-${p}")
  run("${CMAKE_COMMAND}" -E env "LD_LIBRARY_PATH=${prefix}/lib" "${WORK_DIR}/build/${p}" "${WORK_DIR}/run-${p}")
  if(NOT last_output MATCHES "consumer_[a-z]+ ok")
    message(FATAL_ERROR "${p} did not report success")
  endif()
endforeach()

if(PKG_CONFIG)
  # As users call it: PKG_CONFIG_PATH only, no --define-variable; the moved prefix is found.
  set(pcs detcore)
  if(WITH_FORTRAN)
    list(APPEND pcs detcore-fortran)
  endif()
  foreach(pc ${pcs})
    run("${CMAKE_COMMAND}" -E env "PKG_CONFIG_PATH=${prefix}/lib/pkgconfig"
        "${PKG_CONFIG}" --cflags --libs ${pc})
    if(NOT last_output MATCHES "-ldetcore" OR last_output MATCHES "installed-here|/usr/local")
      message(FATAL_ERROR "pkg-config ${pc}: not relocated to ${prefix}: ${last_output}")
    endif()
    separate_arguments(flags UNIX_COMMAND "${last_output}")
    foreach(f ${flags})
      if(f MATCHES "^-[IL](.*)$")
        if(NOT IS_DIRECTORY "${CMAKE_MATCH_1}")
          message(FATAL_ERROR "pkg-config ${pc}: ${f} is not a folder")
        endif()
      endif()
    endforeach()
  endforeach()
  if(WITH_FORTRAN)
    # The module is found through the .pc file alone (the Fortran consumer, built by pkg-config).
    run("${CMAKE_COMMAND}" -E env "PKG_CONFIG_PATH=${prefix}/lib/pkgconfig"
        "${PKG_CONFIG}" --cflags --libs detcore-fortran)
    separate_arguments(fflags UNIX_COMMAND "${last_output}")
    run("${FORTRAN_COMPILER}" "${SOURCE_DIR}/app.f90" -o "${WORK_DIR}/consumer_fortran_pc" ${fflags}
        "-Wl,-rpath,${prefix}/lib")
    file(MAKE_DIRECTORY "${WORK_DIR}/run-consumer_fortran_pc")
    run("${WORK_DIR}/consumer_fortran_pc" "${WORK_DIR}/run-consumer_fortran_pc")
    if(NOT last_output MATCHES "consumer_[a-z]+ ok")
      message(FATAL_ERROR "consumer_fortran_pc did not report success")
    endif()
  endif()
endif()
message("package_consumer: OK")
