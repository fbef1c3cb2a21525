import BuildGateCore
import Crypto
import Foundation
import HTTPTypes

/// The dashboard's session: the API token a person signed in with, a CSRF token and an expiry, sealed with the
/// gateway's key (AES-GCM) into an `HttpOnly`, `SameSite=Strict` cookie. The token is checked again on every
/// request, so revoking it ends the session. The API takes the cookie on `GET` only (an `EventSource` cannot send
/// headers); everything that changes state goes through the dashboard's forms, which carry the CSRF token.
package struct SessionCookie: Sendable {
    package static let name = "bg_session"
    /// How long a session lasts.
    package static let lifetime: TimeInterval = 12 * 3600

    package struct Session: Codable, Sendable, Equatable {
        package var token: String
        package var csrf: String
        package var expires: Date
    }

    private let box: SecretBox
    /// Whether the cookie is marked `Secure` (the gateway's public URL is https).
    package let secure: Bool

    package init(box: SecretBox, secure: Bool) {
        self.box = box
        self.secure = secure
    }

    /// A new session for `token`, with a fresh CSRF token.
    package func start(token: String, now: Date) -> Session {
        let csrf = Data(SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }).base64URLEncoded()
        return Session(token: token, csrf: csrf, expires: now.addingTimeInterval(Self.lifetime))
    }

    /// The `Set-Cookie` value that keeps `session`.
    package func setCookie(_ session: Session) throws -> String {
        let sealed = try box.seal(try JSONEncoder().encode(session), context: "session").base64URLEncoded()
        return "\(Self.name)=\(sealed); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(Int(Self.lifetime))"
            + (secure ? "; Secure" : "")
    }

    /// The `Set-Cookie` value that ends a session.
    package var clearCookie: String {
        "\(Self.name)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0" + (secure ? "; Secure" : "")
    }

    /// The session the request's cookie holds, if it opens and has not expired.
    package func session(in headers: HTTPFields, now: Date) -> Session? {
        for field in headers[values: .cookie] {
            for pair in field.split(separator: ";") {
                let parts = pair.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                guard parts.count == 2, parts[0] == Self.name, let sealed = Data(base64URLEncoded: String(parts[1])),
                    let plain = try? box.open(sealed, context: "session"),
                    let session = try? JSONDecoder().decode(Session.self, from: plain), session.expires > now
                else { continue }
                return session
            }
        }
        return nil
    }
}

extension Data {
    fileprivate func base64URLEncoded() -> String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    fileprivate init?(base64URLEncoded text: String) {
        guard text.utf8.count <= 8192 else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.utf8.count % 4) % 4)
        self.init(base64Encoded: base64)
    }
}
