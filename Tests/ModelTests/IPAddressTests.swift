import Model
import Testing

// IP addresses as configuration values: strict parsing, RFC 5952 printing.

@Test func ipv6TextIsParsedStrictlyAndPrintedCanonically() {
    let canonical: [(String, String)] = [
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"), ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:0db8::0001", "2001:db8::1"), ("::", "::"), ("::1", "::1"), ("1::", "1::"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"), ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"), ("fe80::1:2", "fe80::1:2"),
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
    ]
    for (text, expected) in canonical { #expect(IPv6Address(text)?.description == expected, "\(text)") }
    for bad in [":", ":::", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "1:2:3:4:5:6:7", "::1:", ":1::", "g::1", "::1%lo",
                "[::1]", " ::1", "1.2.3.4", "::1.2.3", "::01.2.3.4", "1:2:3:4:5:6:7:1.2.3.4"] {
        #expect(IPv6Address(bad) == nil, "\(bad)")
    }
    #expect(IPPrefix("2001:db8::5/64")?.network == IPAddress("2001:db8::"))
    #expect(IPPrefix("10.1.2.3/12")?.network == IPAddress("10.0.0.0"))
    #expect(IPPrefix("10.0.0.0/8")?.contains(IPAddress("10.255.0.1")!) == true)
    #expect(IPPrefix("10.0.0.0/8")?.contains(IPAddress("::a00:1")!) == false)
    for bad in ["10.0.0.1/", "10.0.0.1/08", "10.0.0.1", "::1/129", "/8", "10.0.0.1/+8"] { #expect(IPPrefix(bad) == nil, "\(bad)") }
    #expect(IPv4Address("010.0.0.1") == nil && IPv4Address("1.2.3") == nil && IPv4Address("1.2.3.4.") == nil)
}
