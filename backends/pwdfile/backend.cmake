# pwdfile: a users file in memory, no library beyond the core's.
target_sources(mailauth_core PRIVATE ${CMAKE_CURRENT_LIST_DIR}/pwdfile_backend.cc)
