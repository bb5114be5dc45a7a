# pam: libpam (pam_start_confdir needs Linux-PAM 1.4).
pkg_check_modules(PAM REQUIRED IMPORTED_TARGET pam)
target_sources(mailauth_core PRIVATE ${CMAKE_CURRENT_LIST_DIR}/pam_backend.cc)
target_link_libraries(mailauth_core PUBLIC PkgConfig::PAM)
