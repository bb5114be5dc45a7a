# What several backends share (no backend of its own; nothing to register):
# failover among servers, the service password file.
target_sources(mailauth_core PRIVATE ${CMAKE_CURRENT_LIST_DIR}/host_selector.cc
  ${CMAKE_CURRENT_LIST_DIR}/password_file.cc)
