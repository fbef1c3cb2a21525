import BuildGateCore
import Testing

struct SecretRedactorTests {
    @Test func secretValuesAndTheirLinesAreMaskedShortOnesAreNot() {
        let redactor = SecretRedactor([
            SecretValue(Array("token-123456".utf8)),
            SecretValue(Array("-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----\n".utf8)),
            SecretValue(Array("ab".utf8)),
        ])
        #expect(redactor.redact("npm token token-123456 used\n") == "npm token **** used\n")
        #expect(redactor.redact("#5 0.120 AAAABBBBCCCC\n") == "#5 0.120 ****\n")
        #expect(redactor.redact("a cab and a tab\n") == "a cab and a tab\n")
        #expect(SecretRedactor([]).redact("unchanged") == "unchanged")
    }
}
