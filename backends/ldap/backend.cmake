# ldap: the pure template code (the backend and libldap follow).
target_sources(mailauth_core PRIVATE ${CMAKE_CURRENT_LIST_DIR}/ldap_template.cc)
