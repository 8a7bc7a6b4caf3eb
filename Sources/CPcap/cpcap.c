// Implementations of the helpers declared in cpcap.h (none yet; see there).
#include "cpcap.h"
