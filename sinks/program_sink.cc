#include "sinks/program_sink.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cstring>

#include "sinks/message_edit.h"

namespace bh::sinks {

namespace asio = boost::asio;

Result<ProgramAnswer> parse_program_output(std::string_view out) {
  ProgramAnswer a;
  bool decided = false;
  while (!out.empty()) {
    auto nl = out.find('\n');
    std::string_view line = out.substr(0, nl);
    out = nl == std::string_view::npos ? std::string_view{} : out.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.empty()) {
      continue;
    }
    auto sp = line.find(' ');
    std::string_view word = line.substr(0, sp);
    std::string_view rest = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
    if (word == "ADD-HEADER") {
      auto colon = rest.find(':');
      if (colon == std::string_view::npos) {
        return transient_error("4.7.1", "program: ADD-HEADER without a colon");
      }
      std::string name(rest.substr(0, colon));
      std::string_view value = rest.substr(colon + 1);
      if (!value.empty() && value.front() == ' ') {
        value.remove_prefix(1);
      }
      if (!header_field_ok(name, value)) {
        return transient_error("4.7.1", "program: bad header field " + name);
      }
      a.headers.emplace_back(std::move(name), std::string(value));
      continue;
    }
    if (decided) {
      return transient_error("4.7.1", "program: more than one verdict");
    }
    decided = true;
    if (word == "CONTINUE" && rest.empty()) {
      a.verdict = Verdict::go_on();
    } else if (word == "ACCEPT" && rest.empty()) {
      a.verdict = Verdict::stop();
    } else if (word == "DISCARD" && rest.empty()) {
      a.verdict = Verdict::discard();
    } else if (word == "REJECT") {
      // REJECT 550 5.7.1 text
      if (rest.size() < 3 || (rest[0] != '4' && rest[0] != '5') || rest[1] < '0' || rest[1] > '9' ||
          rest[2] < '0' || rest[2] > '9' || (rest.size() > 3 && rest[3] != ' ')) {
        return transient_error("4.7.1", "program: REJECT needs a 4xx or 5xx code");
      }
      const int code = (rest[0] - '0') * 100 + (rest[1] - '0') * 10 + (rest[2] - '0');
      std::string_view tail = rest.size() > 4 ? rest.substr(4) : std::string_view{};
      auto sp2 = tail.find(' ');
      std::string enhanced(tail.substr(0, sp2));
      std::string text(sp2 == std::string_view::npos ? std::string_view{} : tail.substr(sp2 + 1));
      bool ok = enhanced.size() >= 5 && enhanced.size() <= 11 && enhanced[0] == rest[0] &&
                enhanced[1] == '.' &&
                enhanced.find_first_not_of("0123456789.") == std::string::npos;
      if (!ok) {
        return transient_error("4.7.1", "program: REJECT needs an enhanced code like " +
                                            std::string(1, rest[0]) + ".7.1");
      }
      for (char c : text) {
        if (static_cast<unsigned char>(c) < 0x20) {
          return transient_error("4.7.1", "program: control character in the REJECT text");
        }
      }
      if (text.empty()) {
        text = "Message refused";
      }
      Error e = code < 500 ? transient_error(enhanced, text) : permanent_error(enhanced, text);
      e.reply_code = code;
      a.verdict = Verdict::reject(std::move(e));
    } else {
      return transient_error("4.7.1",
                             "program: unknown directive " + std::string(word.substr(0, 40)));
    }
  }
  return a;
}

namespace {

class Child : public std::enable_shared_from_this<Child> {
 public:
  Child(const ProgramConfig& cfg, std::shared_ptr<MessageEvent> ev, asio::any_io_executor ex,
        MessageSink::Done done)
      : cfg_(cfg),
        ev_(std::move(ev)),
        in_(ex),
        out_(ex),
        timer_(ex),
        reap_(ex),
        done_(std::move(done)) {}

  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);  // just killed: returns at once
    }
  }

  void start() {
    int inp[2], outp[2];
    if (::pipe2(inp, O_CLOEXEC) != 0) {
      return fail("pipe failed");
    }
    if (::pipe2(outp, O_CLOEXEC) != 0) {
      ::close(inp[0]);
      ::close(inp[1]);
      return fail("pipe failed");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, inp[0], 0);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    std::vector<std::string> env_s = environment();
    std::vector<char*> argv, envp;
    for (auto& a : cfg_.argv) {
      argv.push_back(const_cast<char*>(a.c_str()));
    }
    argv.push_back(nullptr);
    for (auto& e : env_s) {
      envp.push_back(e.data());
    }
    envp.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, cfg_.argv[0].c_str(), &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    ::close(inp[0]);
    ::close(outp[1]);
    if (rc != 0) {
      ::close(inp[1]);
      ::close(outp[0]);
      return fail("cannot start " + cfg_.argv[0] + ": " + std::strerror(rc));
    }
    pid_ = pid;
    in_.assign(inp[1]);
    out_.assign(outp[0]);
    timer_.expires_after(cfg_.timeout);
    timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (!ec && self && !self->finished_) {
        self->fail(self->cfg_.argv[0] + " did not finish within " +
                   std::to_string(self->cfg_.timeout.count()) + " ms; killed");
      }
    });
    asio::async_write(in_, asio::buffer(ev_->message),
                      [self = shared_from_this()](boost::system::error_code, std::size_t) {
                        // A program that does not read all of its input is fine (EPIPE).
                        boost::system::error_code ignored;
                        self->in_.close(ignored);
                      });
    read();
  }

 private:
  std::vector<std::string> environment() const {
    const auto& e = ev_->envelope;
    std::string rcpts;
    for (const auto& r : e.recipients) {
      rcpts += (rcpts.empty() ? "" : ",") + r.address;
    }
    std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin",
                                    "BH_SENDER=" + e.sender,
                                    "BH_RECIPIENTS=" + rcpts,
                                    "BH_CLIENT_ADDRESS=" + e.client_address,
                                    "BH_HELO=" + e.client_helo,
                                    "BH_QUEUE_ID=" + e.id,
                                    "BH_SIZE=" + std::to_string(ev_->message.size())};
    for (const auto& [name, value] : ev_->attributes) {
      // A value is one line: no NUL (it would cut the variable) and no newline.
      std::string v = value.substr(0, value.find_first_of(std::string("\0\r\n", 3)));
      env.push_back("BH_" + name + "=" + v);
    }
    return env;
  }

  void read() {
    out_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](
                                                 boost::system::error_code ec, std::size_t n) {
      if (self->finished_) {
        return;
      }
      if (ec) {
        self->wait_exit();  // EOF: the program closed stdout
        return;
      }
      if (self->output_.size() + n > self->cfg_.max_output) {
        self->fail("program output over " + std::to_string(self->cfg_.max_output) + " octets");
        return;
      }
      self->output_.append(self->buf_.data(), n);
      self->read();
    });
  }

  void wait_exit() {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == 0) {
      reap_.expires_after(std::chrono::milliseconds(2));
      reap_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (!ec && !self->finished_) {
          self->wait_exit();
        }
      });
      return;
    }
    pid_ = -1;
    if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fail(cfg_.argv[0] + " exited with status " +
           (r > 0 && WIFEXITED(status) ? std::to_string(WEXITSTATUS(status))
                                       : std::string("(signal)")));
      return;
    }
    auto a = parse_program_output(output_);
    if (!a.ok()) {
      fail(a.error().message);
      return;
    }
    if (a->verdict.kind != Verdict::Kind::kReject && a->verdict.kind != Verdict::Kind::kDiscard) {
      for (const auto& [n, v] : a->headers) {
        add_header(ev_->message, n, v);
      }
    }
    finish(Result<Verdict>(std::move(a->verdict)));
  }

  void fail(const std::string& why) { finish(Result<Verdict>(transient_error("4.7.1", why))); }

  void finish(Result<Verdict> v) {
    if (finished_) {
      return;
    }
    finished_ = true;
    timer_.cancel();
    reap_.cancel();
    boost::system::error_code ignored;
    in_.close(ignored);
    out_.close(ignored);
    auto d = std::move(done_);
    d(std::move(v));
  }

  const ProgramConfig cfg_;
  std::shared_ptr<MessageEvent> ev_;
  asio::posix::stream_descriptor in_, out_;
  asio::steady_timer timer_, reap_;
  MessageSink::Done done_;
  pid_t pid_ = -1;
  std::array<char, 4096> buf_{};
  std::string output_;
  bool finished_ = false;
};

}  // namespace

ProgramSink::ProgramSink(ProgramConfig config) : config_(std::move(config)) {}

void ProgramSink::on_message(std::shared_ptr<MessageEvent> event, asio::any_io_executor ex,
                             Done done) {
  std::make_shared<Child>(config_, std::move(event), ex, std::move(done))->start();
}

}  // namespace bh::sinks
