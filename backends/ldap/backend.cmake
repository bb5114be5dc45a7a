# ldap: OpenLDAP's libldap and liblber (libldap-dev).
pkg_check_modules(LDAP REQUIRED IMPORTED_TARGET ldap lber)
target_sources(mailauth_core PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/ldap_template.cc
  ${CMAKE_CURRENT_LIST_DIR}/ldap_connection.cc
  ${CMAKE_CURRENT_LIST_DIR}/ldap_backend.cc
  ${CMAKE_CURRENT_LIST_DIR}/saslauthd_conf.cc)
target_link_libraries(mailauth_core PUBLIC PkgConfig::LDAP)
