# bh_nodeconfig: node/config.{h,cc}, the YAML -> bh::proto::Config loader. Meant to be
# included from node/CMakeLists.txt (`include(${CMAKE_CURRENT_SOURCE_DIR}/config.cmake)`),
# which then no longer declares bh_nodeconfig itself. Safe to include more than once and
# from anywhere: it adds proto/ if nobody has, and if bh_nodeconfig already exists (the
# older declaration in node/CMakeLists.txt) it only adds what the proto schema needs.
include_guard(GLOBAL)

if(NOT TARGET bh_proto)
  add_subdirectory(${PROJECT_SOURCE_DIR}/proto ${PROJECT_BINARY_DIR}/proto)
endif()

if(NOT TARGET bh_nodeconfig)
  bh_module(nodeconfig SOURCES ${CMAKE_CURRENT_LIST_DIR}/config.cc ${CMAKE_CURRENT_LIST_DIR}/linkstate_config.cc DEPS bh_common bh_proto bh_routing bh_directory bh_sinks yaml-cpp)
else()
  target_link_libraries(bh_nodeconfig PUBLIC bh_proto bh_routing bh_directory bh_sinks yaml-cpp)
  target_sources(bh_nodeconfig PRIVATE ${CMAKE_CURRENT_LIST_DIR}/linkstate_config.cc)
endif()
