#pragma once
// One line per event on stderr (journal under systemd): "<level> <component>: <text>".
// Thread-safe (a single write(2) per line). No global state besides the level threshold,
// which the composition root sets once at start.

#include <unistd.h>

#include <atomic>
#include <string>
#include <string_view>

namespace bh::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

inline std::atomic<int>& threshold() {
  static std::atomic<int> t{static_cast<int>(Level::kInfo)};
  return t;
}

inline void write(Level level, std::string_view component, std::string_view text) {
  if (static_cast<int>(level) < threshold().load(std::memory_order_relaxed)) {
    return;
  }
  static constexpr std::string_view kNames[] = {"debug", "info", "warn", "error"};
  std::string line;
  line.reserve(text.size() + component.size() + 16);
  line.append(kNames[static_cast<int>(level)]).append(" ").append(component).append(": ");
  for (char c : text) {  // never let peer-controlled text forge log lines
    line.push_back((c == '\n' || c == '\r') ? ' ' : c);
  }
  line.push_back('\n');
  [[maybe_unused]] auto n = ::write(2, line.data(), line.size());
}

inline void info(std::string_view c, std::string_view t) { write(Level::kInfo, c, t); }
inline void warn(std::string_view c, std::string_view t) { write(Level::kWarn, c, t); }
inline void error(std::string_view c, std::string_view t) { write(Level::kError, c, t); }
inline void debug(std::string_view c, std::string_view t) { write(Level::kDebug, c, t); }

}  // namespace bh::log
