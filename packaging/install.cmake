# What `make install` and `make deb` install (included by CMakeLists.txt).
#
# Three components, which `make deb` packages as three Debian packages:
#   cli  treemig: bin/treemig (linked with the static core), its man pages
#        and its bash completion
#   lib  libtreemigMAJOR: the shared library and its SONAME link
#   dev  libtreemig-dev: treemig.h, treemig_version.h, libtreemig.so (the
#        link the linker looks for), libtreemig.a, treemig.pc, docs/api.md
#        and the examples
# Paths come from GNUInstallDirs, under CMAKE_INSTALL_PREFIX (make install
# PREFIX=..., default /usr/local). The rules run in this order; a failed
# install leaves the earlier ones done (make uninstall removes them).

set(TREEMIG_LIB_PACKAGE libtreemig${PROJECT_VERSION_MAJOR})
if(TREEMIG_DEB)
  # Debian: each package has its own doc folder (copyright, changelog)
  set(TREEMIG_DOC_CLI ${CMAKE_INSTALL_DATADIR}/doc/treemig)
  set(TREEMIG_DOC_LIB ${CMAKE_INSTALL_DATADIR}/doc/${TREEMIG_LIB_PACKAGE})
  set(TREEMIG_DOC_DEV ${CMAKE_INSTALL_DATADIR}/doc/libtreemig-dev)
else()
  set(TREEMIG_DOC_DEV ${CMAKE_INSTALL_DOCDIR})
endif()

install(TARGETS treemig RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT cli)
if(TARGET treemig_shared)
  install(TARGETS treemig_shared
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT lib NAMELINK_COMPONENT dev)
endif()
install(TARGETS treemig_core ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
install(FILES include/treemig.h ${PROJECT_BINARY_DIR}/include/treemig_version.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)

# treemig.pc: Requires.private names every pkg-config module the core links
# (treemig_pkg() in CMakeLists.txt), so that `pkg-config --static` is whole.
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(TREEMIG_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(TREEMIG_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
list(JOIN TREEMIG_PKG_MODULES ", " TREEMIG_PC_REQUIRES)
set(TREEMIG_PC_LIBS_PRIVATE "")
if(CMAKE_THREAD_LIBS_INIT)
  set(TREEMIG_PC_LIBS_PRIVATE "Libs.private: ${CMAKE_THREAD_LIBS_INIT}")
endif()
configure_file(packaging/treemig.pc.in ${PROJECT_BINARY_DIR}/treemig.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/treemig.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

install(FILES docs/api.md DESTINATION ${TREEMIG_DOC_DEV} COMPONENT dev)
install(FILES examples/README.md examples/discover_progress.c examples/to_copy.c
  DESTINATION ${TREEMIG_DOC_DEV}/examples COMPONENT dev)

foreach(page ${TREEMIG_MAN_PAGES})
  get_filename_component(name ${page} NAME)
  string(REGEX REPLACE "^.*\\.([0-9])(\\.gz)?$" "\\1" section ${name})
  install(FILES ${page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section} COMPONENT cli)
endforeach()
install(FILES completion/treemig.bash
  DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
  RENAME treemig COMPONENT cli)

if(TREEMIG_DEB)
  include(packaging/deb.cmake)
endif()
