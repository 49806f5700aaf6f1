import Testing
@testable import NBDTLS

@Suite("Distinguished names and DN authorization")
struct DistinguishedNameTests {
    @Test("RFC 4514 order and certificate order of one subject match")
    func bothOrders() throws {
        let rfc = try DistinguishedName(parsing: "CN=laptop.example.com,O=Example Org,L=London,ST=London,C=GB")
        let qemu = try DistinguishedName(parsing: "C=GB, ST=London, L=London, O=Example Org, CN=laptop.example.com")
        #expect(rfc.matches(qemu))
        #expect(rfc.reversed.description == "C=GB,ST=London,L=London,O=Example Org,CN=laptop.example.com")
    }

    @Test("different subjects do not match, and a subset is not a match")
    func mismatch() throws {
        let a = try DistinguishedName(parsing: "CN=a,O=x")
        #expect(!a.matches(try DistinguishedName(parsing: "CN=b,O=x")))
        #expect(!a.matches(try DistinguishedName(parsing: "CN=a")))
        #expect(!a.matches(try DistinguishedName(parsing: "CN=a,O=x,OU=y")))
    }

    @Test("escaped commas, pluses and hex pairs stay inside values")
    func escapes() throws {
        let dn = try DistinguishedName(parsing: #"CN=Smith\, John,O=A\+B,OU=x\2Cy"#)
        #expect(dn.attributes.map(\.value) == ["Smith, John", "A+B", "x,y"])
        #expect(dn.description == #"CN=Smith\, John,O=A\+B,OU=x\,y"#)
        #expect(dn.matches(try DistinguishedName(parsing: dn.reversed.description)))
    }

    @Test("attribute types are case-insensitive and common aliases fold")
    func aliases() throws {
        #expect(try DistinguishedName(parsing: "cn=a,E=x@y").matches(try DistinguishedName(parsing: "EMAIL=x@y,CN=a")))
    }

    @Test("malformed names are rejected with a reason", arguments: ["", "CN", "CN=a,O", "=a", "CN=a\\", "C N=a"])
    func malformed(text: String) {
        let error = #expect(throws: TLSError.self) { try DistinguishedName(parsing: text) }
        #expect(error?.message.contains("is malformed") == true)
    }

    @Test("an authorization list permits members in any order and nothing else")
    func authorizationList() throws {
        let list = try DNAuthorizationList(parsing: ["CN=alice,O=Org", "C=GB,CN=bob"])
        #expect(list.permits(try DistinguishedName(parsing: "O=Org,CN=alice")))
        #expect(list.permits(try DistinguishedName(parsing: "CN=bob,C=GB")))
        #expect(!list.permits(try DistinguishedName(parsing: "CN=mallory,O=Org")))
        #expect(DNAuthorizationList().permits(try DistinguishedName(parsing: "CN=anyone")))
    }
}
