#include "smtp/data_reader.h"

namespace bh::smtp {

DataReader::DataReader(std::uint64_t max_body, std::uint64_t max_header)
    : max_body_(max_body), max_header_(max_header) {}

void DataReader::emit(char c, std::string& out) {
  ++body_;
  if (in_header_) {
    ++header_;
    if (header_ > max_header_) {
      header_too_big_ = true;
    }
    // The header section ends at the first empty line (RFC 5322 §2.1).
    bool empty_first_line = body_ == 2 && last1_ == '\r' && c == '\n';
    if (empty_first_line || (last3_ == '\r' && last2_ == '\n' && last1_ == '\r' && c == '\n')) {
      in_header_ = false;
    }
    last3_ = last2_;
    last2_ = last1_;
    last1_ = c;
  }
  if (body_ <= max_body_ && !header_too_big_) {
    out.push_back(c);
  }
}

DataReader::Step DataReader::feed(std::string_view in, std::string& out) {
  Step step;
  std::size_t i = 0;
  for (; i < in.size(); ++i) {
    char c = in[i];
    if (c == '\n' && state_ != State::kCr && state_ != State::kDotCr) {
      ++bare_lf_;
    }
    switch (state_) {
      case State::kLineStart:
        if (c == '.') {
          state_ = State::kDot;
        } else {
          emit(c, out);
          state_ = c == '\r' ? State::kCr : State::kMid;
        }
        break;
      case State::kDot:
        if (c == '\r') {
          state_ = State::kDotCr;
        } else {
          // "..foo" -> ".foo": the first dot is dropped (RFC 5321 §4.5.2).
          emit(c, out);
          state_ = State::kMid;
        }
        break;
      case State::kDotCr:
        if (c == '\n') {
          step.consumed = i + 1;
          step.done = true;
          ++step.lines;
          return step;
        }
        // ".\r<x>": an unstuffed line holding a bare CR; keep both as content.
        emit('\r', out);
        emit(c, out);
        state_ = c == '\r' ? State::kCr : State::kMid;
        break;
      case State::kMid:
        emit(c, out);
        if (c == '\r') {
          state_ = State::kCr;
        }
        break;
      case State::kCr:
        emit(c, out);
        if (c == '\n') {
          state_ = State::kLineStart;
          ++step.lines;
        } else if (c != '\r') {
          state_ = State::kMid;
        }
        break;
    }
  }
  step.consumed = i;
  return step;
}

}  // namespace bh::smtp
