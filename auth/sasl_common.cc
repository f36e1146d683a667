#include "auth/sasl_common.h"

#include <mutex>

namespace bh::auth {

namespace {

void* mutex_alloc() { return new std::mutex; }
int mutex_lock(void* m) {
  static_cast<std::mutex*>(m)->lock();
  return SASL_OK;
}
int mutex_unlock(void* m) {
  static_cast<std::mutex*>(m)->unlock();
  return SASL_OK;
}
void mutex_free(void* m) { delete static_cast<std::mutex*>(m); }

}  // namespace

void use_real_mutexes() {
  static std::once_flag once;
  std::call_once(once, [] { sasl_set_mutex(mutex_alloc, mutex_lock, mutex_unlock, mutex_free); });
}

}  // namespace bh::auth
