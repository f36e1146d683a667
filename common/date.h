#pragma once
// RFC 5322 3.3 date-time in UTC ("Sun, 29 Nov 2026 06:00:00 +0000"), independent of the
// process locale and time zone: Received fields, Date of reports, DSN fields.

#include <string>

#include "common/clock.h"

namespace bh {

std::string rfc5322_date(Clock::time_point t);

}  // namespace bh
