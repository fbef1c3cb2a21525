// libFuzzer entry point for the forge webhook parsers: the first byte picks the forge, the second the event header,
// the rest is the body (signatures are checked before parsing in the gateway, but a forge's own bugs reach the parser).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebhookParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 1 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let forges = Forge.allCases
    let forge = forges[Int(bytes[0]) % forges.count]
    let events = [
        "push", "Push Hook", "Tag Push Hook", "Merge Request Hook", "pull_request", "repo:push",
        "pullrequest:created", "create", "ping", "delete", "tag_push",
    ]
    let event = events[Int(bytes[1]) % events.count]
    let headers: [(name: String, value: String)] = [
        ("X-GitHub-Event", event), ("X-Gitlab-Event", event), ("X-Gitea-Event", event), ("X-Forgejo-Event", event),
        ("X-Event-Key", event), ("X-GitHub-Delivery", "d"), ("X-Request-UUID", "d"),
    ]
    _ = try? ForgeWebhookParser.parse(WebhookDelivery(headers: headers, body: Array(bytes.dropFirst(2))), forge: forge)
    return 0
}
