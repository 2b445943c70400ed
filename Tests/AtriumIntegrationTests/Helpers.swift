import AtriumCore
import Crypto
import Foundation
import GRPCCore
import Testing

/// SHA-256 of a file, read in 1 MiB pieces.
func sha256(ofFile path: String) throws -> String {
    let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    var hasher = SHA256()
    while let data = try handle.read(upToCount: 1 << 20), !data.isEmpty {
        hasher.update(data: data)
    }
    return Hex.encode(hasher.finalize())
}

/// The gRPC status code of an error, if it is an RPCError.
func code(of error: any Error) -> RPCError.Code? {
    (error as? RPCError)?.code
}

/// Every integration suite runs inside this one, one test at a time: each test starts a whole mesh of eight
/// processes on a 2-core machine, and running meshes side by side would make the memory figures the tests check
/// depend on whatever else happens to run. No test bounds how long something took (that is `make bench`'s
/// question); the time limit only stops a test that hangs.
@Suite("Integration: the real mesh", .serialized, .timeLimit(.minutes(10)))
struct IntegrationTests {}
