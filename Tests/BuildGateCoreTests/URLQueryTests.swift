import BuildGateCore
import Testing

struct URLQueryTests {
    @Test func onlyASCIIUnreservedCharactersStayRaw() {
        #expect(URLQuery.percentEncoded("AZaz09-._~") == "AZaz09-._~")
        #expect(URLQuery.percentEncoded("group/app café&x=1 +") == "group%2Fapp%20caf%C3%A9%26x%3D1%20%2B")
        #expect(URLQuery.encode([]) == "")
        #expect(
            URLQuery.encode([("labels", #"{"team":"é"}"#), ("t", "r:5000/a:1")])
                == "?labels=%7B%22team%22%3A%22%C3%A9%22%7D&t=r%3A5000%2Fa%3A1")
    }
}
