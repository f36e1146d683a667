#pragma once
// Names the calling thread for top -H, ps -L, perf and gdb ("bh-io-0", "bh-commit", ...).
// Linux allows 15 characters; longer names are cut, never an error.

#include <pthread.h>

#include <string>

namespace bh {

inline void name_this_thread(const std::string& name) {
  ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace bh
