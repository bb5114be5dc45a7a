# mysql: MariaDB Connector/C.
pkg_check_modules(MARIADB REQUIRED IMPORTED_TARGET libmariadb)
# The presets' schemas, from the .sql files users can also run by hand.
file(READ ${CMAKE_CURRENT_LIST_DIR}/schema-users.sql MAILAUTH_SCHEMA_USERS)
file(READ ${CMAKE_CURRENT_LIST_DIR}/schema-postfixadmin.sql MAILAUTH_SCHEMA_POSTFIXADMIN)
configure_file(${CMAKE_CURRENT_LIST_DIR}/mysql_schemas.h.in
               ${CMAKE_BINARY_DIR}/generated/mysql_schemas.h @ONLY)
target_sources(mailauth_core PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/query_template.cc
  ${CMAKE_CURRENT_LIST_DIR}/connection_pool.cc
  ${CMAKE_CURRENT_LIST_DIR}/mysql_backend.cc)
target_link_libraries(mailauth_core PUBLIC PkgConfig::MARIADB)
