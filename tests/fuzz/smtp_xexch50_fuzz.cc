// Fuzz target: XEXCH50 (smtp/xexch50.h). Input: one knob octet, the argument string up to
// the first LF, then the blob.
// 1. Arguments: an accepted pair respects every limit (octets in 1..cap and >= 4 * count,
//    count in 1..max_recipients + 1) and formats back to an equal pair; a refusal is one
//    of the two kinds with its reply (501 5.5.4 / 552 5.3.4).
// 2. Blob: an accepted blob has a count within the limits, its views lie inside the
//    input, and serializing the parts gives the input back (the framing is canonical).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "smtp/xexch50.h"

namespace {

using namespace bh::smtp;

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::uint8_t knobs = data[0];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t lf = in.find('\n');
  std::string_view arg = in.substr(0, lf);
  std::string_view blob = lf == std::string_view::npos ? std::string_view{} : in.substr(lf + 1);

  Xexch50Limits lim;
  lim.max_octets = (knobs & 1) ? (1u << 20) : 64 + knobs;
  lim.max_recipients = knobs % 8;
  lim.expected_count = (knobs & 2) ? 1 + knobs % 4 : 0;
  auto a = parse_xexch50_args(arg, lim);
  if (a.ok()) {
    BH_CHECK(a.args.octets >= 1 && a.args.octets <= lim.max_octets);
    BH_CHECK(a.args.count >= 1 && a.args.count <= lim.max_recipients + 1u);
    BH_CHECK(a.args.octets >= 4u * a.args.count);
    BH_CHECK(lim.expected_count == 0 || a.args.count == lim.expected_count);
    auto again = parse_xexch50_args(format_xexch50_args(a.args), lim);
    BH_CHECK(again.ok() && again.args.octets == a.args.octets && again.args.count == a.args.count);
    BH_CHECK(a.reply_code() == 0);
  } else {
    BH_CHECK(a.args.octets == 0 && a.args.count == 0);
    BH_CHECK((a.reply_code() == 501 && std::string_view(a.enhanced()) == "5.5.4") ||
             (a.reply_code() == 552 && std::string_view(a.enhanced()) == "5.3.4"));
  }

  Xexch50BlobLimits bl;
  bl.max_subblobs = 1 + knobs % 16;
  bl.expected_subblobs = (knobs & 4) ? (knobs >> 4) : 0;
  auto b = parse_xexch50_blob(blob, bl);
  if (b.ok()) {
    BH_CHECK(b.blob.count() <= bl.max_subblobs);
    BH_CHECK(bl.expected_subblobs == 0 || b.blob.count() == bl.expected_subblobs);
    BH_CHECK(inside(b.blob.message, blob));
    for (auto r : b.blob.recipients) {
      BH_CHECK(inside(r, blob));
    }
    auto owned = to_owned(b.blob);
    BH_CHECK(serialize_xexch50_blob(owned.message, owned.recipients) == blob);
  } else {
    BH_CHECK(b.blob.recipients.empty() && b.blob.message.empty());
    BH_CHECK(to_string(*b.error) != nullptr);
  }
  return 0;
}
