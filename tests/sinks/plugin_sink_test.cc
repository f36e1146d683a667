// PluginSink with the example plug-in of deploy/examples (built by CMake: BH_STAMP_PLUGIN).
#include "sinks/plugin_sink.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <future>

namespace bh::sinks {
namespace {

Result<Verdict> call(PluginSink& p, std::shared_ptr<MessageEvent> ev) {
  // The plug-in runs on the pool; its answer arrives on a pool thread.
  boost::asio::io_context io;
  std::promise<Result<Verdict>> answer;
  auto got = answer.get_future();
  p.on_message(ev, io.get_executor(), [&](Result<Verdict> v) { answer.set_value(std::move(v)); });
  EXPECT_EQ(got.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  return got.get();
}

TEST(PluginSinkTest, ExamplePluginStampsAndRejects) {
  boost::asio::thread_pool pool(1);
  auto p = PluginSink::load(BH_STAMP_PLUGIN, "X-Stamped: by plug-in", &pool);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p.value()->plugin_name(), "stamp");
  auto ev = std::make_shared<MessageEvent>();
  ev->message = "Subject: a\r\n\r\nhello\r\n";
  auto v = call(*p.value(), ev);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->kind, Verdict::Kind::kContinue);
  EXPECT_EQ(ev->message, "Subject: a\r\nX-Stamped: by plug-in\r\n\r\nhello\r\n");

  auto bad = std::make_shared<MessageEvent>();
  bad->message = "Subject: a\r\n\r\nPLUGIN-REJECT-ME\r\n";
  v = call(*p.value(), bad);
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->kind, Verdict::Kind::kReject);
  EXPECT_EQ(v->error.reply_code, 550);
  pool.join();
}

TEST(PluginSinkTest, LoadErrors) {
  EXPECT_FALSE(PluginSink::load("/nonexistent/plugin.so", "", nullptr).ok());
  EXPECT_FALSE(PluginSink::load("libc.so.6", "", nullptr).ok());  // no entry point
  auto refused = PluginSink::load(BH_STAMP_PLUGIN, "no colon here", nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("Name: value"), std::string::npos);
}

}  // namespace
}  // namespace bh::sinks
