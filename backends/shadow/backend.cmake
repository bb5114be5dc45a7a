# shadow: /etc/shadow through libc.
target_sources(mailauth_core PRIVATE ${CMAKE_CURRENT_LIST_DIR}/shadow_backend.cc)
