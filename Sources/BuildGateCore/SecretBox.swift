import Crypto
import Foundation

/// Seals secrets at rest (trigger secrets, clone and registry credentials) with AES-GCM under the gateway's key.
///
/// Each value is sealed with a fresh random nonce and bound to `context` (e.g. `trigger:<id>`) as authenticated
/// data, so a sealed value copied to another row does not open.
package struct SecretBox: Sendable {
    private let key: SymmetricKey

    package init(key: SymmetricKey) {
        self.key = key
    }

    /// A 256-bit key from 32 bytes of base64, or nil.
    package init?(base64Key: String) {
        guard let data = Data(base64Encoded: base64Key.trimmingCharacters(in: .whitespacesAndNewlines)),
            data.count == 32
        else { return nil }
        key = SymmetricKey(data: data)
    }

    package func seal(_ plaintext: Data, context: String) throws -> Data {
        guard let combined = try AES.GCM.seal(plaintext, using: key, authenticating: Data(context.utf8)).combined else {
            throw BuildGateError(.internalError, "sealing failed")
        }
        return combined
    }

    package func open(_ sealed: Data, context: String) throws -> Data {
        do {
            return try AES.GCM.open(AES.GCM.SealedBox(combined: sealed), using: key, authenticating: Data(context.utf8))
        } catch {
            throw BuildGateError(.internalError, "a sealed secret does not open with the configured key")
        }
    }
}
