#include "sinks/plugin_sink.h"

#include <dlfcn.h>

#include <boost/asio/post.hpp>
#include <optional>
#include <vector>

#include "sinks/message_edit.h"

namespace bh::sinks {

namespace {

struct CallState {
  MessageEvent* event;
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<Error> reply;
};

int api_add_header(void* ctx, const char* name, const char* value) {
  auto* s = static_cast<CallState*>(ctx);
  if (name == nullptr || value == nullptr || !header_field_ok(name, value) ||
      s->headers.size() >= 100) {
    return -1;
  }
  s->headers.emplace_back(name, value);
  return 0;
}

int api_set_reply(void* ctx, int code, const char* enhanced, const char* text) {
  auto* s = static_cast<CallState*>(ctx);
  if (code < 400 || code > 599 || enhanced == nullptr || text == nullptr) {
    return -1;
  }
  std::string en(enhanced), t(text);
  if (en.size() < 5 || en.size() > 11 || en[0] != static_cast<char>('0' + code / 100) ||
      en[1] != '.' || en.find_first_not_of("0123456789.") != std::string::npos || t.size() > 500) {
    return -1;
  }
  for (char c : t) {
    if (static_cast<unsigned char>(c) < 0x20) {
      return -1;
    }
  }
  Error e = code < 500 ? transient_error(en, t) : permanent_error(en, t);
  e.reply_code = code;
  s->reply = std::move(e);
  return 0;
}

}  // namespace

Result<std::shared_ptr<PluginSink>> PluginSink::load(const std::string& path,
                                                     const std::string& argument,
                                                     boost::asio::thread_pool* pool) {
  std::shared_ptr<PluginSink> p(new PluginSink());
  p->pool_ = pool;
  p->handle_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (p->handle_ == nullptr) {
    const char* e = ::dlerror();
    return permanent_error("5.3.5", "cannot load " + path + ": " + (e != nullptr ? e : "?"));
  }
  void* sym = ::dlsym(p->handle_, "bh_sink_plugin_v1");
  if (sym == nullptr) {
    return permanent_error("5.3.5", path + ": no bh_sink_plugin_v1 entry point");
  }
  auto entry = reinterpret_cast<bh_sink_plugin_entry_v1>(sym);
  p->table_ = entry();
  if (p->table_ == nullptr || p->table_->abi_version != BH_SINK_ABI_VERSION ||
      p->table_->on_message == nullptr) {
    p->table_ = nullptr;
    return permanent_error(
        "5.3.5", path + ": not an ABI version " + std::to_string(BH_SINK_ABI_VERSION) + " plug-in");
  }
  p->name_ = p->table_->name != nullptr ? p->table_->name : path;
  if (p->table_->create != nullptr) {
    const char* error = nullptr;
    p->instance_ = p->table_->create(argument.c_str(), &error);
    if (error != nullptr) {
      p->table_ = nullptr;
      return permanent_error("5.3.5", path + ": create refused: " + error);
    }
  }
  return p;
}

PluginSink::~PluginSink() {
  if (table_ != nullptr && table_->destroy != nullptr) {
    table_->destroy(instance_);
  }
  if (handle_ != nullptr) {
    ::dlclose(handle_);
  }
}

Result<Verdict> PluginSink::call(MessageEvent& ev) const {
  const auto& env = ev.envelope;
  std::vector<const char*> rcpts;
  for (const auto& r : env.recipients) {
    rcpts.push_back(r.address.c_str());
  }
  bh_sink_message m{env.id.c_str(),    env.sender.c_str(),         rcpts.data(),
                    rcpts.size(),      env.client_address.c_str(), env.client_helo.c_str(),
                    ev.message.data(), ev.message.size()};
  CallState st{&ev, {}, std::nullopt};
  bh_sink_api api{&st, &api_add_header, &api_set_reply};
  const int v = table_->on_message(instance_, &m, &api);
  switch (v) {
    case BH_SINK_CONTINUE:
    case BH_SINK_STOP:
      for (const auto& [n, val] : st.headers) {
        add_header(ev.message, n, val);
      }
      return v == BH_SINK_STOP ? Verdict::stop() : Verdict::go_on();
    case BH_SINK_REJECT: {
      if (st.reply) {
        return Verdict::reject(*st.reply);
      }
      Error e = permanent_error("5.7.1", "Message refused by policy");
      e.reply_code = 550;
      return Verdict::reject(e);
    }
    case BH_SINK_DISCARD:
      return Verdict::discard();
    default:
      return transient_error("4.7.1", "plug-in " + name_ + " failed (" + std::to_string(v) + ")");
  }
}

void PluginSink::on_message(std::shared_ptr<MessageEvent> event, boost::asio::any_io_executor ex,
                            Done done) {
  (void)ex;
  if (pool_ == nullptr) {
    done(call(*event));
    return;
  }
  // The sink outlives the call: the chain (and the node) own it until every io thread
  // and the pool are joined.
  boost::asio::post(
      *pool_, [this, event = std::move(event), done = std::move(done)] { done(call(*event)); });
}

}  // namespace bh::sinks
