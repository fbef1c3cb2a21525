import Crypto
import Foundation

/// Signature and token checks for each forge, on the raw body, in constant time. They fail closed: an empty
/// secret, a missing header or a malformed value are all `.unauthorized`.
public enum WebhookSignature {
    /// Verifies `delivery` as sent by `forge` with `secret`.
    ///
    /// - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body)>`.
    /// - Gitea / Forgejo: `X-Gitea-Signature` or `X-Forgejo-Signature: <hex HMAC-SHA256(body)>`.
    /// - GitLab: `X-Gitlab-Token: <secret>`, or the signing-token form (Standard Webhooks): `webhook-signature:
    ///   v1,<base64 HMAC-SHA256("{webhook-id}.{webhook-timestamp}.{body}")>`, keyed with the base64 part of a
    ///   `whsec_…` secret or the secret's bytes.
    /// - Bitbucket: `X-Hub-Signature: sha256=<hex HMAC-SHA256(body)>`.
    public static func verify(_ delivery: WebhookDelivery, forge: Forge, secret: String) throws(WebhookError) {
        guard !secret.isEmpty else { throw .unauthorized }
        let key = SymmetricKey(data: Data(secret.utf8))
        let valid: Bool
        switch forge {
        case .github:
            valid = hexHMACMatches(delivery["X-Hub-Signature-256"], prefix: "sha256=", body: delivery.body, key: key)
        case .gitea:
            valid = hexHMACMatches(
                delivery["X-Gitea-Signature"] ?? delivery["X-Forgejo-Signature"], prefix: "", body: delivery.body,
                key: key)
        case .bitbucket:
            valid = hexHMACMatches(delivery["X-Hub-Signature"], prefix: "sha256=", body: delivery.body, key: key)
        case .gitlab:
            if let token = delivery["X-Gitlab-Token"] {
                valid = constantTimeEquals(token, secret)
            } else {
                valid = standardWebhookMatches(delivery, secret: secret)
            }
        }
        guard valid else { throw .unauthorized }
    }

    /// `prefix + lowercase hex` of HMAC-SHA256(body), checked with `isValidAuthenticationCode` (constant time).
    static func hexHMACMatches(_ header: String?, prefix: String, body: [UInt8], key: SymmetricKey) -> Bool {
        guard let header, header.hasPrefix(prefix), let mac = bytes(hex: header.dropFirst(prefix.count)),
            mac.count == 32
        else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: body, using: key)
    }

    static func standardWebhookMatches(_ delivery: WebhookDelivery, secret: String) -> Bool {
        guard let id = delivery["webhook-id"], let timestamp = delivery["webhook-timestamp"],
            let signatures = delivery["webhook-signature"]
        else { return false }
        let keyBytes: Data
        if secret.hasPrefix("whsec_") {
            guard let decoded = Data(base64Encoded: String(secret.dropFirst("whsec_".count))) else { return false }
            keyBytes = decoded
        } else {
            keyBytes = Data(secret.utf8)
        }
        let key = SymmetricKey(data: keyBytes)
        let signed = Array("\(id).\(timestamp).".utf8) + delivery.body
        // The header may carry several space-separated signatures (key rotation); any valid one will do.
        for candidate in signatures.split(separator: " ") where candidate.hasPrefix("v1,") {
            if let mac = Data(base64Encoded: String(candidate.dropFirst(3))), mac.count == 32,
                HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: signed, using: key)
            {
                return true
            }
        }
        return false
    }

    /// Compares two secrets without leaking where they differ: both are MACed with a random key, and the MACs are
    /// compared in constant time.
    static func constantTimeEquals(_ given: String, _ expected: String) -> Bool {
        let key = SymmetricKey(size: .bits256)
        let expectedMAC = HMAC<SHA256>.authenticationCode(for: Data(expected.utf8), using: key)
        return HMAC<SHA256>.isValidAuthenticationCode(expectedMAC, authenticating: Data(given.utf8), using: key)
    }

    static func bytes(hex: Substring) -> [UInt8]? {
        guard hex.count % 2 == 0 else { return nil }
        var result: [UInt8] = []
        result.reserveCapacity(hex.count / 2)
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
            result.append(byte)
            index = next
        }
        return result
    }
}
