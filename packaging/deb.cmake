# The Debian packages (make deb; included by packaging/install.cmake when
# TREEMIG_DEB is on). CPack's DEB generator packages the install rules'
# three components, so the packages hold exactly what `make install`
# installs (docs/packaging.md says why CPack and not dpkg-buildpackage):
#   treemig          the cli component
#   libtreemigMAJOR  the lib component (SONAME libtreemig.so.MAJOR)
#   libtreemig-dev   the dev component
# What Debian's policy asks beyond that is added here: a copyright file and
# a changelog in each package's doc folder, gzipped man pages (CMakeLists),
# stripped binaries, shlibs and the ldconfig trigger of the library, and
# dependencies computed by dpkg-shlibdeps. `make deb` builds with
# dpkg-buildflags' hardening flags and runs lintian.

set(TREEMIG_DEB_MAINTAINER "treemig maintainers <maintainers@users.noreply.r-seed-856b11b1.example>"
  CACHE STRING "the Maintainer field of the Debian packages")

# The changelog: one entry for this version, dated by SOURCE_DATE_EPOCH
# when it is set (reproducible builds), else by the time of configuring.
string(TIMESTAMP TREEMIG_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
configure_file(${PROJECT_SOURCE_DIR}/packaging/changelog.in
               ${PROJECT_BINARY_DIR}/deb/changelog @ONLY)
add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/deb/changelog.gz
  COMMAND gzip -9nkf ${PROJECT_BINARY_DIR}/deb/changelog
  DEPENDS ${PROJECT_BINARY_DIR}/deb/changelog
  VERBATIM)
add_custom_target(deb-changelog ALL DEPENDS ${PROJECT_BINARY_DIR}/deb/changelog.gz)

foreach(comp cli lib dev)
  string(TOUPPER ${comp} COMP)
  install(FILES ${PROJECT_SOURCE_DIR}/packaging/copyright
                ${PROJECT_BINARY_DIR}/deb/changelog.gz
    DESTINATION ${TREEMIG_DOC_${COMP}} COMPONENT ${comp})
endforeach()

configure_file(${PROJECT_SOURCE_DIR}/packaging/deb/lintian-overrides.in
               ${PROJECT_BINARY_DIR}/deb/${TREEMIG_LIB_PACKAGE} @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/deb/${TREEMIG_LIB_PACKAGE}
  DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides COMPONENT lib)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME treemig)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${TREEMIG_DEB_MAINTAINER}")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL cli lib dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)

# Each package's Description is CPACK_DEBIAN_<COMP>_DESCRIPTION: synopsis,
# then the extended text. CPack puts CPACK_PACKAGE_DESCRIPTION_SUMMARY in
# front of it unless that is CPack's own default, which this sets it to.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${CMAKE_PROJECT_NAME} built using CMake")

set(CPACK_DEBIAN_CLI_PACKAGE_NAME treemig)
set(CPACK_DEBIAN_CLI_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_CLI_DESCRIPTION
"one-way migration of a tree of folders and files
treemig moves a large tree of folders and files from one storage to
another, one way. It first discovers both trees into an SQLite state file,
so that what is missing, what conflicts and what exists only on the
destination can be reviewed and changed before anything is written; then
it copies and verifies. Every step survives a crash and resumes where it
stopped.")

set(CPACK_DEBIAN_LIB_PACKAGE_NAME ${TREEMIG_LIB_PACKAGE})
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
# the ldconfig trigger, instead of the maintainer scripts calling ldconfig
# that CPack would write (packaging/deb/postinst says why they are empty)
set(CPACK_DEBIAN_LIB_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/packaging/deb/triggers
  ${PROJECT_SOURCE_DIR}/packaging/deb/postinst
  ${PROJECT_SOURCE_DIR}/packaging/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_LIB_DESCRIPTION
"treemig's migration engine (shared library)
treemig moves a large tree of folders and files from one storage to
another, one way, through a reviewable SQLite state file that survives
crashes. This package holds the engine as a shared library.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libtreemig-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEV_DEPENDS lib)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libsqlite3-dev, libpq-dev, libyaml-dev, libxxhash-dev")
set(CPACK_DEBIAN_DEV_DESCRIPTION
"treemig's migration engine (development files)
treemig moves a large tree of folders and files from one storage to
another, one way, through a reviewable SQLite state file that survives
crashes. This package holds the header, the static library, the
pkg-config file, the API documentation and two example programs.")

include(CPack)
