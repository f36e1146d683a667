#include "common/address.h"
