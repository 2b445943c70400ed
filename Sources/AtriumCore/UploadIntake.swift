public import Foundation

/// Whoever stores what a data plane receives as `POST /v1/uploads/<token>` (the registry): the plane is HTTP,
/// and the intake decides and stores, so the plane needs no registry code and the registry no HTTP.
public protocol UploadIntake: Sendable {
    /// The plane serving this intake listens on `port`, and tells clients `baseURL` (empty: the gateway's host
    /// with that port). Until then the intake issues no capabilities.
    func planeListening(port: Int, baseURL: String)

    /// Takes one upload: `token` is the path's last part, `headers` the request's (lower-case names, the first
    /// value of each). The intake checks the token and the headers, calls `proceed` once it accepts the upload
    /// (the plane then answers `Expect: 100-continue`), reads the body with `next` until it returns `nil`, and
    /// answers. It never throws: every outcome is an answer.
    func upload(
        token: Substring,
        headers: [String: String],
        proceed: () async throws -> Void,
        next: () async throws -> Data?
    ) async -> PlaneAnswer
}

/// A data plane's answer: an HTTP status and a JSON body.
public struct PlaneAnswer: Sendable, Equatable {
    public var status: Int
    public var json: String

    public init(status: Int, json: String) {
        self.status = status
        self.json = json
    }
}
