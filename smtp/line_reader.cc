#include "smtp/line_reader.h"

namespace bh::smtp {

LineReader::LineReader(std::size_t max_line, std::uint64_t max_discard)
    : max_line_(max_line), max_discard_(max_discard) {}

void LineReader::append(std::string_view bytes) {
  if (head_ > 0 && (head_ >= buf_.size() / 2 || head_ >= 4096)) {
    buf_.erase(0, head_);
    head_ = 0;
  }
  buf_.append(bytes);
}

void LineReader::consume(std::size_t n) {
  head_ += n < buffered() ? n : buffered();
  if (head_ == buf_.size()) {
    buf_.clear();
    head_ = 0;
  }
}

LineReader::Next LineReader::next() {
  std::string_view in = peek();
  std::size_t crlf = in.find("\r\n");
  if (discarding_) {
    if (crlf == std::string_view::npos) {
      // Keep a trailing CR: it may be the first half of the CRLF that ends the line.
      std::size_t drop = in.size() - ((!in.empty() && in.back() == '\r') ? 1 : 0);
      discarded_ += drop;
      consume(drop);
      if (discarded_ > max_discard_) {
        return {Kind::kOverflow, {}};
      }
      return {Kind::kNeedMore, {}};
    }
    consume(crlf + 2);
    discarding_ = false;
    discarded_ = 0;
    return {Kind::kTooLong, {}};
  }
  if (crlf == std::string_view::npos) {
    if (in.size() > max_line_) {
      // Already too long whatever follows: stop buffering it (hostile #35, #36).
      discarding_ = true;
      discarded_ = 0;
      return next();
    }
    return {Kind::kNeedMore, {}};
  }
  if (crlf + 2 > max_line_) {
    consume(crlf + 2);
    return {Kind::kTooLong, {}};
  }
  Next n{Kind::kLine, in.substr(0, crlf)};
  head_ += crlf + 2;  // not consume(): the returned view must stay valid
  return n;
}

}  // namespace bh::smtp
