import Foundation

/// systemd socket activation (`sd_listen_fds` protocol): when `LISTEN_PID` is this process,
/// descriptors `3 ..< 3 + LISTEN_FDS` are listening sockets handed to us.
public enum SystemdSocketActivation {
    public static let firstDescriptor: Int32 = 3

    /// The inherited listening sockets, or `[]` when the process was not socket-activated.
    /// The variables are removed so child processes do not inherit them.
    public static func listenAddresses(environment: [String: String] = ProcessInfo.processInfo.environment,
                                       unsetEnvironment: Bool = true) throws -> [ListenAddress] {
        guard let pidText = environment["LISTEN_PID"], let countText = environment["LISTEN_FDS"] else { return [] }
        guard let pid = Int32(pidText.trimmingCharacters(in: .whitespaces)) else {
            throw ServerError(.socketActivation, "LISTEN_PID is not a number: \(pidText)")
        }
        guard pid == getpid() else { return [] }
        guard let count = Int32(countText.trimmingCharacters(in: .whitespaces)), count >= 0, count <= 1024 else {
            throw ServerError(.socketActivation, "LISTEN_FDS is not a count: \(countText)")
        }
        if unsetEnvironment {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        return (0..<count).map { .inherited(fd: firstDescriptor + $0) }
    }
}
