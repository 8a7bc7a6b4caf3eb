// CPcap: libpcap for Swift (the `Capture` module wraps it).
//
// Swift imports everything Capture needs from <pcap/pcap.h> directly (pcap_open_dead,
// pcap_compile, pcap_offline_filter, pcap_open_offline_with_tstamp_precision, pcap_next_ex,
// and the DLT_/PCAP_ integer macros), so there are no C helpers yet. Add one here only for
// what Swift cannot call (function-like macros, awkward struct layouts): 5-20 lines,
// returning a negative code on error, with its contract documented in this header.
#pragma once
#include <pcap/pcap.h>
