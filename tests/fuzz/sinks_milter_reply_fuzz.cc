// Fuzz target: the milter reply stream (sinks/milter_protocol.h). Input: raw octets as a
// milter would send them, cut into feeds by the first octet.
// 1. The reader never yields a packet above its cap, and after an error stops.
// 2. Every decoded reply is well-formed: a reply code is 4xx/5xx with an enhanced code
//    of the same class and no CR/LF in the text; header actions carry a usable name and
//    a value without bare CR/LF (no header injection into the spooled message).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "sinks/message_edit.h"
#include "sinks/milter_protocol.h"

using namespace bh::sinks;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::size_t step = 1 + data[0] % 64;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  milter::MilterReader reader(4096);
  bool broken = false;
  for (std::size_t at = 0; at < in.size() && !broken; at += step) {
    reader.feed(in.substr(at, step));
    while (auto p = reader.next()) {
      if (!p->ok()) {
        BH_CHECK(p->error().transient());
        broken = true;
        break;
      }
      BH_CHECK(p->value().data.size() < 4096);
      auto r = milter::decode_reply(p->value());
      if (!r.ok()) {
        BH_CHECK(r.error().transient());
        continue;
      }
      using K = milter::Reply::Kind;
      switch (r->kind) {
        case K::kReplyCode:
          BH_CHECK(r->code >= 400 && r->code < 600);
          BH_CHECK(r->enhanced[0] == static_cast<char>('0' + r->code / 100));
          BH_CHECK(r->text.find_first_of("\r\n") == std::string::npos);
          break;
        case K::kAddHeader:
        case K::kInsHeader:
        case K::kChgHeader:
          BH_CHECK(header_field_ok(r->name, r->value.empty() ? "x" : r->value));
          {
            std::string m = "Subject: a\r\n\r\nbody\r\n";
            insert_header(m, r->index, r->name, r->value);
            BH_CHECK(m.size() > 20);
            BH_CHECK(m.compare(m.size() - 6, 6, "body\r\n") == 0);
          }
          break;
        default:
          break;
      }
    }
  }
  return 0;
}
