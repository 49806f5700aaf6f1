/// The validator's verdict on one request header.
public enum RequestValidation: Hashable, Sendable {
    /// Perform the request (read its payload first when it has one).
    case valid
    /// Do not perform it: read and discard the request's payload
    /// (`request.payloadLength(form:)` bytes, which is then bounded by the drain limit), then
    /// reply with this error. The connection stays usable.
    case reply(error: NBDErrno, message: String)
    /// Framing cannot be kept (a payload too large to drain) or the client broke a MUST that
    /// leaves no sane way on: close the connection without reading further.
    case disconnect(reason: String)
}
