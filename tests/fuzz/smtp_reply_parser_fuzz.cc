// Fuzz target: the client side. The input is what a hostile server sends.
// 1. ReplyParser: fed whole or in pieces the replies (or the error) are identical, and
//    every reply respects the limits (CVE-2020-8794 class).
// 2. ClientSession: the same octets, in pieces, as the server side of a whole delivery
//    (body chunks and TLS answered at once); Finished comes exactly once, before the
//    single Disconnect, with an outcome for every recipient; nothing is sent after it.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "smtp/client_session.h"
#include "smtp/reply_parser.h"

namespace {

using namespace bh::smtp;

struct Parsed {
  std::vector<std::string> replies;  // summaries plus line counts
  std::optional<std::string> error;
};

Parsed parse(std::string_view in, std::size_t piece, const ReplyLimits& lim) {
  ReplyParser p(lim);
  Parsed out;
  for (std::size_t i = 0; i < in.size(); i += piece) {
    std::string_view chunk = in.substr(i, piece);
    while (!chunk.empty()) {
      auto r = p.feed(chunk);
      if (!r.ok()) {
        BH_CHECK(r.error().transient() && r.error().enhanced == "4.5.0");
        out.error = r.error().message;
        return out;
      }
      BH_CHECK(r->consumed > 0 && r->consumed <= chunk.size());
      chunk.remove_prefix(r->consumed);
      if (r->reply) {
        const Reply& rep = *r->reply;
        BH_CHECK(rep.code >= 200 && rep.code <= 559);
        BH_CHECK(!rep.lines.empty() && rep.lines.size() <= lim.max_lines);
        std::size_t total = 0;
        for (const auto& l : rep.lines) {
          BH_CHECK(l.size() + 6 <= lim.max_line);
          BH_CHECK(l.find_first_of("\r\n") == std::string::npos);
          total += l.size();
        }
        BH_CHECK(total <= lim.max_reply);
        out.replies.push_back(rep.summary() + "/" + std::to_string(rep.lines.size()));
      }
    }
  }
  return out;
}

void drive_session(std::string_view in, std::uint8_t knobs) {
  ClientConfig cfg;
  cfg.lmtp = knobs & 1;
  cfg.tls = (knobs & 2) ? TlsPolicy::kOpportunistic
                        : ((knobs & 4) ? TlsPolicy::kRequired : TlsPolicy::kNever);
  if (knobs & 8) {
    cfg.auth = ClientCredentials{"user", "pass"};
    cfg.auth_without_tls = knobs & 16;
  }
  cfg.use_chunking = knobs & 32;
  cfg.body_chunk = 7;
  cfg.reply_limits.max_line = 256;
  cfg.reply_limits.max_lines = 20;
  cfg.reply_limits.max_reply = 2048;
  OutboundMessage msg;
  msg.sender = "s@example.org";
  msg.size = 40;
  msg.body = (knobs & 64) ? bh::queue::BodyType::k8BitMime : bh::queue::BodyType::k7Bit;
  msg.envid = "E1";
  for (const char* r : {"a@example.net", "b@example.net", "c@example.net"}) {
    msg.recipients.push_back(OutboundRecipient{r, bh::queue::kNotifySuccess, "rfc822;x@y"});
  }
  ClientSession s(cfg, msg);
  const std::string body = ".line one\r\n..two\nthree\r.\r\n";
  std::size_t body_pos = 0;
  int finished = 0, disconnects = 0;
  bool sent_after_finish = false;

  std::vector<ClientActions> work;
  auto run = [&](ClientActions acts) {
    work.push_back(std::move(acts));
    while (!work.empty()) {
      ClientActions batch = std::move(work.back());
      work.pop_back();
      for (auto& a : batch) {
        if (auto* f = std::get_if<Finished>(&a)) {
          ++finished;
          BH_CHECK(f->result.recipients.size() == 3);
        } else if (std::holds_alternative<Disconnect>(a)) {
          BH_CHECK(finished == 1);
          ++disconnects;
        } else if (auto* b = std::get_if<SendBytes>(&a)) {
          // After Finished only QUIT may still leave.
          if (finished > 0 && b->bytes != "QUIT\r\n") {
            sent_after_finish = true;
          }
        } else if (std::holds_alternative<StartTls>(a)) {
          work.push_back(s.on_tls_established());
        } else if (auto* n = std::get_if<NeedBody>(&a)) {
          std::size_t len = std::min(n->max_bytes, body.size() - body_pos);
          std::string_view chunk = std::string_view(body).substr(body_pos, len);
          body_pos += len;
          work.push_back(s.on_body_chunk(chunk, body_pos == body.size()));
        }
      }
    }
  };
  run(s.start());
  std::size_t piece = 1 + knobs % 5;
  for (std::size_t i = 0; i < in.size() && !s.closed(); i += piece) {
    run(s.on_bytes(in.substr(i, piece)));
  }
  run((knobs & 128) ? s.on_timeout() : s.on_eof());
  BH_CHECK(finished == 1 && disconnects == 1 && s.closed());
  BH_CHECK(!sent_after_finish);
  for (const auto& r : s.result().recipients) {
    BH_CHECK(!r.enhanced.empty());
    BH_CHECK(r.text.find_first_of("\r\n") == std::string::npos);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  std::uint8_t knobs = data[0];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  ReplyLimits lim;
  lim.max_line = 64 + knobs % 64;
  lim.max_lines = 1 + knobs % 9;
  lim.max_reply = 256;
  Parsed whole = parse(in, std::max<std::size_t>(in.size(), 1), lim);
  Parsed pieces = parse(in, 1 + knobs % 7, lim);
  BH_CHECK(whole.replies == pieces.replies);
  BH_CHECK(whole.error == pieces.error);
  drive_session(in, knobs);
  return 0;
}
