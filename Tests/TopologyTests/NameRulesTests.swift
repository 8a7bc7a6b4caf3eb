import Testing
@testable import Topology

/// The name rules the loader and the command line share.
@Suite struct NameRulesTests {
    @Test func namesFollowTheFileRules() {
        #expect(NameRules.problem(with: "lab", as: .topology) == nil)
        #expect(NameRules.problem(with: "lab-2", as: .topology) == nil)
        #expect(NameRules.problem(with: "2lab", as: .topology)?.contains("starting with a lowercase letter") == true)
        #expect(NameRules.problem(with: "2web", as: .guest) == nil, "guests may start with a digit")
        #expect(NameRules.problem(with: "abcdefghijklm", as: .topology)?.contains("too long") == true, "13 > 12")
        for bad in ["", "../x", "a/b", "A", "a b", "a.b", "a_b", "x\u{0}"] {
            #expect(NameRules.problem(with: bad, as: .switch) != nil, "'\(bad)'")
        }
    }

    @Test func interfaceAndPortNames() {
        #expect(NameRules.interfaceNameProblem("enp1s0") == nil)
        #expect(NameRules.interfaceNameProblem("labnic0.10") == nil)
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "sixteen-bytes-xx"] {
            #expect(NameRules.interfaceNameProblem(bad) != nil, "'\(bad)'")
        }
        #expect(NameRules.portNameProblem("web1.eth0") == nil)
        #expect(NameRules.portNameProblem("a-very-long-gst.eth12") == nil, "guest names up to 15 plus .ethN")
        #expect(NameRules.portNameProblem("enp1s0") == nil, "an uplink NIC")
        for bad in ["../x", "web1.eth", "web1.ethx", "Web1.eth0", "a/b", "web1.eth0/x", ""] {
            #expect(NameRules.portNameProblem(bad) != nil, "'\(bad)'")
        }
    }
}
