import AtriumCore
import AtriumTesting
import Crypto
import Foundation
import GRDB
import Testing

@testable import AtriumStorage

@Suite("Content-addressed blob store")
struct BlobStoreTests {
    private func digest(_ data: Data) -> String { Hex.encode(SHA256.hash(data: data)) }

    @Test("a committed blob is stored under its SHA-256 and reads back by byte range")
    func commitAndRead() throws {
        let directory = try TemporaryDirectory()
        let store = try BlobStore(root: directory.path)
        let data = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let writer = try store.makeWriter()
        for start in stride(from: 0, to: data.count, by: 65_536) {
            try writer.write(data[start..<min(start + 65_536, data.count)])
        }
        // What was written reads back before the commit, whole or in part.
        #expect(try writer.contents() == Array(data))
        #expect(try writer.contents(offset: 299_990, length: 100) == Array(data.suffix(10)))
        let commit = try writer.commit()
        #expect(commit == BlobCommit(sha256: digest(data), size: UInt64(data.count), alreadyStored: false))
        #expect(try store.contains(commit.sha256))
        #expect(try store.allDigests() == [commit.sha256])
        let reader = try store.openReader(commit.sha256)
        #expect(reader.size == UInt64(data.count))
        #expect(try reader.read(offset: 0, length: 10) == data.prefix(10))
        #expect(try reader.read(offset: 299_990, length: 100) == data.suffix(10))
        #expect(try reader.read(offset: 300_000, length: 100).isEmpty)
        #expect(try reader.readAll() == Array(data))
        #expect(throws: StorageError.rangeOutOfBounds("")) { try reader.read(offset: 300_001, length: 1) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(directory.path)/tmp").isEmpty)
    }

    @Test("a cache store removes a blob (an open reader keeps its bytes); a read-only store refuses")
    func remove() throws {
        let directory = try TemporaryDirectory()
        let store = try BlobStore(root: directory.path)
        let data = Data("a variant".utf8)
        let writer = try store.makeWriter()
        try writer.write(data)
        let commit = try writer.commit()
        let reader = try store.openReader(commit.sha256)
        try store.remove(commit.sha256)
        #expect(try !store.contains(commit.sha256))
        #expect(try reader.read(offset: 0, length: 100) == data)
        try store.remove(commit.sha256)  // already gone: not an error
        let readOnly = try BlobStore(root: directory.path, readOnly: true)
        #expect(throws: StorageError.readOnly("")) { try readOnly.remove(commit.sha256) }
    }

    @Test("storing an existing hash again is a no-op")
    func deduplicates() throws {
        let directory = try TemporaryDirectory()
        let store = try BlobStore(root: directory.path)
        let data = Data("the same bytes".utf8)
        for expectAlready in [false, true] {
            let writer = try store.makeWriter()
            try writer.write(data)
            #expect(try writer.commit().alreadyStored == expectAlready)
        }
        #expect(try store.allDigests().count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(directory.path)/tmp").isEmpty)
    }

    @Test("a digest or size mismatch discards the bytes", arguments: [true, false])
    func mismatchDiscards(digestMismatch: Bool) throws {
        let directory = try TemporaryDirectory()
        let store = try BlobStore(root: directory.path)
        let writer = try store.makeWriter()
        try writer.write(Data("abc".utf8))
        if digestMismatch {
            #expect(throws: StorageError.digestMismatch("")) { try writer.commit(expectingSHA256: String(repeating: "0", count: 64)) }
        } else {
            #expect(throws: StorageError.sizeMismatch("")) { try writer.commit(size: 4) }
        }
        #expect(try store.allDigests().isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(directory.path)/tmp").isEmpty)
    }

    @Test("an aborted or abandoned writer leaves nothing behind")
    func abortLeavesNothing() throws {
        let directory = try TemporaryDirectory()
        let store = try BlobStore(root: directory.path)
        let aborted = try store.makeWriter()
        try aborted.write(Data(repeating: 1, count: 1000))
        aborted.abort()
        do {
            let abandoned = try store.makeWriter()
            try abandoned.write(Data(repeating: 2, count: 1000))
        }
        #expect(try store.allDigests().isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(directory.path)/tmp").isEmpty)
    }

    @Test("temp files left by a crash are removed at start-up, and are never visible as blobs")
    func staleTemporaries() throws {
        let directory = try TemporaryDirectory()
        let store = try BlobStore(root: directory.path)
        _ = FileManager.default.createFile(atPath: "\(directory.path)/tmp/crashed.part", contents: Data(repeating: 3, count: 100))
        #expect(try store.allDigests().isEmpty)
        #expect(try store.removeStaleTemporaries() == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(directory.path)/tmp").isEmpty)
    }

    @Test("malformed digests and missing blobs are refused")
    func badDigests() throws {
        let directory = try TemporaryDirectory()
        let store = try BlobStore(root: directory.path)
        #expect(throws: StorageError.invalidDigest("")) { try store.openReader("../../etc/passwd") }
        #expect(throws: StorageError.invalidDigest("")) { try store.openReader(String(repeating: "A", count: 64)) }
        #expect(throws: StorageError.notFound("")) { try store.openReader(String(repeating: "a", count: 64)) }
    }

    @Test("a read-only store refuses writes")
    func readOnly() throws {
        let directory = try TemporaryDirectory()
        _ = try BlobStore(root: directory.path)
        let readOnly = try BlobStore(root: directory.path, readOnly: true)
        #expect(throws: StorageError.readOnly("")) { try readOnly.makeWriter() }
    }

    // Bounded memory is checked where it can be measured cleanly: on the registry process, in the integration
    // tests. Here, other suites share this process, so its peak RSS says nothing about the writer.
    @Test("a 64 MiB blob streams through a writer in pieces and hashes right")
    func largeBlobBoundedMemory() throws {
        let directory = try TemporaryDirectory()
        let store = try BlobStore(root: directory.path)
        let writer = try store.makeWriter()
        var chunk = Data(repeating: 0, count: 1 << 20)
        var hasher = SHA256()
        for index in 0..<64 {
            chunk[0] = UInt8(index)
            hasher.update(data: chunk)
            try writer.write(chunk)
        }
        let commit = try writer.commit()
        #expect(commit.sha256 == Hex.encode(hasher.finalize()))
        #expect(commit.size == 64 << 20)
        #expect(try store.openReader(commit.sha256).size == 64 << 20)
    }
}

@Suite("Service databases")
struct ServiceDatabaseTests {
    @Test("a service database opens in WAL mode with full sync and applies its named migrations once")
    func opens() throws {
        let directory = try TemporaryDirectory()
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1 things") { db in
            try db.create(table: "thing") { t in t.primaryKey("id", .text) }
        }
        let path = "\(directory.path)/nested/service.sqlite"
        let pool = try ServiceDatabase.open(path: path, migrator: migrator)
        try pool.write { db in try db.execute(sql: "INSERT INTO thing (id) VALUES (?)", arguments: ["a"]) }
        let (mode, sync, applied) = try pool.read { db in
            (
                try String.fetchOne(db, sql: "PRAGMA journal_mode"),
                try Int.fetchOne(db, sql: "PRAGMA synchronous"),
                try migrator.appliedIdentifiers(db)
            )
        }
        #expect(mode == "wal")
        #expect(sync == 2)
        #expect(applied == ["v1 things"])
        let reopened = try ServiceDatabase.open(path: path, migrator: migrator)
        #expect(try reopened.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM thing") } == 1)
    }
}
