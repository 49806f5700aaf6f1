/// One message from QEMU, classified. Pure: built from a parsed JSON value, no I/O.
///
/// QMP's server messages are exactly one of: the greeting (`{"QMP": {...}}`), a success reply
/// (`{"return": ..., "id": ...}`), an error reply (`{"error": {"class", "desc"}, "id": ...}`) or
/// an event (`{"event": name, "data": ..., "timestamp": {...}}`).
enum QMPMessage: Equatable {
    case greeting(QMPValue)
    case success(id: QMPValue?, value: QMPValue)
    case failure(id: QMPValue?, errorClass: String, description: String)
    case event(QMPEvent)

    init(line: some Collection<UInt8>) throws {
        try self.init(value: QMPValue.parse(line))
    }

    init(value: QMPValue) throws {
        guard let members = value.objectValue else {
            throw QMPError(.malformedMessage, "QMP message is not a JSON object: \(value)")
        }
        if let greeting = members["QMP"] {
            self = .greeting(greeting)
        } else if let result = members["return"] {
            self = .success(id: members["id"], value: result)
        } else if let error = members["error"] {
            guard let errorClass = error["class"]?.stringValue, let description = error["desc"]?.stringValue else {
                throw QMPError(.malformedMessage, "error reply without class and desc: \(value)")
            }
            self = .failure(id: members["id"], errorClass: errorClass, description: description)
        } else if let name = members["event"] {
            guard let name = name.stringValue else {
                throw QMPError(.malformedMessage, "event name is not a string: \(value)")
            }
            var timestamp: Double?
            if let seconds = members["timestamp"]?["seconds"]?.doubleValue,
               let micros = members["timestamp"]?["microseconds"]?.doubleValue {
                timestamp = seconds + micros / 1_000_000
            }
            self = .event(QMPEvent(name: name, data: members["data"] ?? .object([:]), timestamp: timestamp))
        } else {
            throw QMPError(.malformedMessage, "unknown QMP message: \(value)")
        }
    }
}
