#pragma once
// PluginSink: a shared-library plug-in (sinks/plugin_abi.h, version 1) as an arrival sink.
// load() dlopens the library, checks the ABI version and calls create(); on_message runs
// the plug-in on the given worker pool (never on the SMTP loop) and posts the verdict
// back. The library stays loaded for the life of the sink.

#include <boost/asio/thread_pool.hpp>
#include <memory>
#include <string>

#include "sinks/plugin_abi.h"
#include "sinks/sink.h"

namespace bh::sinks {

class PluginSink : public MessageSink {
 public:
  // Errors (permanent): cannot open, no entry point, wrong ABI version, create refused.
  static Result<std::shared_ptr<PluginSink>> load(const std::string& path,
                                                  const std::string& argument,
                                                  boost::asio::thread_pool* pool);
  ~PluginSink() override;
  void on_message(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor ex,
                  Done done) override;
  const std::string& plugin_name() const { return name_; }

 private:
  PluginSink() = default;
  Result<Verdict> call(MessageEvent& event) const;
  void* handle_ = nullptr;
  const bh_sink_plugin* table_ = nullptr;
  void* instance_ = nullptr;
  std::string name_;
  boost::asio::thread_pool* pool_ = nullptr;
};

}  // namespace bh::sinks
