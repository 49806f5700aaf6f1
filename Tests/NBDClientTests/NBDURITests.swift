import Testing
import NBDClient
import NBDProtocol

@Suite("NBD URI parsing")
struct NBDURITests {
    @Test("a plain nbd URI gives host, default port and export")
    func plainTCP() throws {
        let uri = try NBDURI("nbd://example.com/disk")
        #expect(uri.transport == .tcp(host: "example.com", port: 10809))
        #expect(uri.exportName == "disk")
        #expect(uri.tlsPolicy == .disable)
        #expect(uri.user == nil)
    }

    @Test("port, user and nbds scheme are read", arguments: [
        ("nbds://alice@h:1234/e", "alice", UInt16(1234)),
        ("NBDS://bob@h/e", "bob", UInt16(10809)),
    ])
    func userPortTLS(text: String, user: String, port: UInt16) throws {
        let uri = try NBDURI(text)
        #expect(uri.user == user)
        #expect(uri.transport == .tcp(host: "h", port: port))
        #expect(uri.tlsPolicy == .require)
    }

    @Test("export names follow the path-minus-first-slash rule", arguments: [
        ("nbd://h/disk", "disk"), ("nbd://h/", ""), ("nbd://h", ""), ("nbd://h//disk", "/disk"),
        ("nbd://h/hello%20world", "hello world"), ("nbd://h/a/b", "a/b"), ("nbd://h/%E2%82%AC", "€"),
    ])
    func exportNames(text: String, name: String) throws {
        #expect(try NBDURI(text).exportName == name)
    }

    @Test("a missing host means localhost")
    func missingHost() throws {
        #expect(try NBDURI("nbd:///x").transport == .tcp(host: "localhost", port: 10809))
        #expect(try NBDURI("nbd://:2000/x").transport == .tcp(host: "localhost", port: 2000))
    }

    @Test("IPv6 literals are taken from brackets")
    func ipv6() throws {
        #expect(try NBDURI("nbd://[::1]:10810/e").transport == .tcp(host: "::1", port: 10810))
        #expect(try NBDURI("nbd://[fe80::1]/").transport == .tcp(host: "fe80::1", port: 10809))
    }

    @Test("Unix socket URIs take the socket from the query")
    func unixSocket() throws {
        let uri = try NBDURI("nbd+unix:///disk?socket=/tmp/nbd.sock")
        #expect(uri.transport == .unix(path: "/tmp/nbd.sock"))
        #expect(uri.exportName == "disk")
        let tls = try NBDURI("nbds+unix:///?SOCKET=/tmp/a%20b;tls-hostname=srv")
        #expect(tls.transport == .unix(path: "/tmp/a b"))
        #expect(tls.tlsPolicy == .require)
        #expect(tls.tlsHostname == "srv")
        #expect(tls.certificateHostname == "srv")
    }

    @Test("an abstract socket may start with %00")
    func abstractSocket() throws {
        #expect(try NBDURI("nbd+unix:///?socket=%00abstract").transport == .unix(path: "\u{0}abstract"))
    }

    @Test("TLS query keys are read, case-insensitively, with & or ; separators")
    func tlsKeys() throws {
        let uri = try NBDURI("nbds://h/e?tls-certificates=/etc/pki/x;TLS-Verify-Peer=off&tls-hostname=srv.example")
        #expect(uri.tlsCertificates == "/etc/pki/x")
        #expect(uri.tlsVerifyPeer == false)
        #expect(uri.tlsHostname == "srv.example")
        let psk = try NBDURI("nbds://alice@h/e?tls-psk-file=/k.psk")
        #expect(psk.tlsPSKFile == "/k.psk")
        #expect(psk.certificateHostname == "h")
    }

    @Test("boolean spellings match libnbd", arguments: [
        ("1", true), ("true", true), ("t", true), ("yes", true), ("y", true), ("ON", true),
        ("0", false), ("false", false), ("f", false), ("no", false), ("n", false), ("Off", false),
    ])
    func booleans(text: String, value: Bool) throws {
        #expect(try NBDURI("nbds://h/?tls-verify-peer=\(text)").tlsVerifyPeer == value)
    }

    @Test("a canonical spelling parses back to the same URI")
    func roundTrip() throws {
        for text in ["nbds://alice@[::1]:99/a%20b?tls-verify-peer=false", "nbd+unix:///x?socket=/tmp/s",
                     "nbd://h/%2Fslash", "nbds+unix://u@/e?socket=/s&tls-psk-file=/k&tls-hostname=n"] {
            let uri = try NBDURI(text)
            #expect(try NBDURI(uri.description) == uri, "\(text) → \(uri.description)")
        }
    }

    @Test("malformed URIs are rejected with a clear message", arguments: [
        ("", "empty"),
        ("disk.img", "scheme"),
        ("http://h/e", "unknown scheme"),
        ("://h/e", "missing scheme"),
        ("nbd://h:0/e", "port"),
        ("nbd://h:65536/e", "port"),
        ("nbd://h:12a/e", "port"),
        ("nbd://h:-1/e", "port"),
        ("nbd://[::1/e", "closing"),
        ("nbd://[zz::1]/e", "not an IPv6"),
        ("nbd://[::1]x/e", "after the IPv6"),
        ("nbd://::1/e", "brackets"),
        ("nbd://h/e%2", "percent escape"),
        ("nbd://h/e%zz", "percent escape"),
        ("nbd://h/e%00x", "NUL"),
        ("nbd://h/%FF", "UTF-8"),
        ("nbd://h/a b", "space"),
        ("nbd://h/e#frag", "fragment"),
        ("nbd+unix:///e", "socket=PATH"),
        ("nbd+unix:///e?socket=", "socket=PATH"),
        ("nbd+unix://host/e?socket=/s", "no host"),
        ("nbd://h/e?socket=/s", "nbd+unix"),
        ("nbds://h/e?socket=/s", "nbds+unix"),
        ("nbd://h/e?color=blue", "unknown query parameter"),
        ("nbds://h/e?tls-verify-peer=maybe", "not a boolean"),
        ("nbd://h/e?tls-certificates=/d", "without TLS"),
        ("nbds://h/e?tls-certificates=/d&tls-psk-file=/k", "mutually exclusive"),
        ("nbd+vsock://2/e", "vsock"),
    ])
    func malformed(text: String, fragment: String) {
        do {
            let uri = try NBDURI(text)
            Issue.record("accepted \(text) as \(uri)")
        } catch let error as NBDClientError {
            #expect(error.code == .invalidURI)
            #expect(error.message.contains(fragment), "\(error.message)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("an export name over 4096 bytes is refused")
    func longName() {
        #expect(throws: NBDClientError.self) { try NBDURI("nbd://h/" + String(repeating: "a", count: 4097)) }
    }
}
