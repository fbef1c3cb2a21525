import Foundation

// The API's JSON as tests read it, and a minimal context to upload: shared by the API and end-to-end tests.

/// A minimal valid context: a Dockerfile and one file.
package func sampleContext(dockerfile: String = "FROM scratch\nCOPY hello /\n") -> [UInt8] {
    var tar = TarWriter()
    tar.file("Dockerfile", dockerfile)
    tar.file("hello", "hello\n")
    tar.end()
    return tar.bytes
}

package struct ErrorEnvelope: Decodable {
    package struct Detail: Decodable { package var code: String; package var message: String }
    package var error: Detail
}

package struct BuildJSON: Decodable {
    package struct Context: Decodable { package var digest: String; package var size: Int64 }
    package struct Image: Decodable { package var reference: String; package var digest: String? }
    package struct Links: Decodable { package var `self`: String; package var logs: String }
    package struct Parameters: Decodable {
        package var secrets: [String]; package var cacheFrom: [String]; package var cacheTo: String?
    }
    package struct Step: Decodable {
        package var name: String; package var startedAt: String?; package var completedAt: String?;
        package var cached: Bool; package var error: String?
    }
    package struct Queue: Decodable { package var position: Int; package var reason: String? }
    package var id: String
    package var status: String
    package var builder: String?
    package var attempt: Int
    package var reason: String?
    package var message: String?
    package var createdAt: String
    package var startedAt: String?
    package var finishedAt: String?
    package var context: Context?
    package var images: [Image]
    package var parameters: Parameters
    package var steps: [Step]
    package var queue: Queue?
    package var links: Links
}

package struct PageJSON: Decodable {
    package var builds: [BuildJSON]
    package var nextCursor: String?
}
