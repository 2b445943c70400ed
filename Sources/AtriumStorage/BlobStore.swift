import AtriumCore
import Crypto
import Dispatch
public import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A content-addressed, immutable store of blobs keyed by their SHA-256.
///
/// Layout under `root`: `sha256/ab/cd/<64 hex>` for blobs, `tmp/` for uploads in progress. A blob appears
/// under its name only after its bytes were written to a temp file, fsynced, and renamed (and the directory
/// fsynced), so a crash at any moment leaves either the whole blob or nothing visible. Temp files left by a
/// crash are removed by ``removeStaleTemporaries()`` at start-up.
///
/// Several processes may read one store (delivery and processing open it read-only); only the registry writes.
public struct BlobStore: Sendable {
    /// The store's root directory.
    public let root: String
    /// Whether writes are refused.
    public let readOnly: Bool

    /// Opens (and unless read-only, creates) a store at `root`.
    public init(root: String, readOnly: Bool = false) throws(StorageError) {
        self.root = root
        self.readOnly = readOnly
        if !readOnly {
            try FileSystem.makeDirectories(root + "/sha256")
            try FileSystem.makeDirectories(root + "/tmp")
        }
    }

    /// The path of a blob's file (which may not exist).
    public func path(for sha256: String) throws(StorageError) -> String {
        guard Hex.isSHA256(sha256) else { throw .invalidDigest("'\(sha256)' is not a lower-case hex SHA-256") }
        let utf8 = Array(sha256.utf8)
        let a = String(decoding: utf8[0..<2], as: UTF8.self)
        let b = String(decoding: utf8[2..<4], as: UTF8.self)
        return "\(root)/sha256/\(a)/\(b)/\(sha256)"
    }

    /// The size of a stored blob, or `nil` when it is absent.
    public func size(of sha256: String) throws(StorageError) -> UInt64? {
        try FileSystem.size(of: path(for: sha256))
    }

    /// Whether a blob is stored.
    public func contains(_ sha256: String) throws(StorageError) -> Bool {
        try size(of: sha256) != nil
    }

    /// Starts writing a new blob. The writer hashes while it writes; nothing is visible until ``BlobWriter/commit(expecting:)``.
    public func makeWriter() throws(StorageError) -> BlobWriter {
        guard !readOnly else { throw .readOnly("blob store at \(root) is read-only") }
        return try BlobWriter(store: self)
    }

    /// Opens a stored blob for reading by byte range.
    public func openReader(_ sha256: String) throws(StorageError) -> BlobReader {
        try BlobReader(path: path(for: sha256))
    }

    /// Deletes a stored blob: for stores that are caches (delivery's variants), dropping one found damaged so
    /// that it can be written again. A store whose blobs records name never removes one this way. Readers that
    /// have it open keep reading what they opened.
    public func remove(_ sha256: String) throws(StorageError) {
        guard !readOnly else { throw .readOnly("blob store at \(root) is read-only") }
        let file = try path(for: sha256)
        guard unlink(file) == 0 || errno == ENOENT else { throw .io("unlink \(file): \(FileSystem.errnoText())") }
    }

    /// Deletes temp files left by interrupted uploads. Call at start-up, before accepting uploads.
    @discardableResult
    public func removeStaleTemporaries() throws(StorageError) -> Int {
        guard !readOnly else { return 0 }
        var removed = 0
        for name in try FileSystem.list(root + "/tmp") {
            if unlink("\(root)/tmp/\(name)") == 0 { removed += 1 }
        }
        return removed
    }

    /// Every stored digest (walks the directory tree; for verification and backup, not for hot paths).
    public func allDigests() throws(StorageError) -> [String] {
        var result: [String] = []
        let base = root + "/sha256"
        for a in try FileSystem.list(base) {
            for b in try FileSystem.list("\(base)/\(a)") {
                for name in try FileSystem.list("\(base)/\(a)/\(b)") where Hex.isSHA256(name) {
                    result.append(name)
                }
            }
        }
        return result.sorted()
    }
}

/// Streams one new blob into a ``BlobStore``: bounded memory whatever the size, hashing as it goes.
///
/// Call ``write(_:)`` for each piece, then ``commit(expecting:)``; or ``abort()`` to discard. A writer that is
/// neither committed nor aborted deletes its temp file when released.
public final class BlobWriter {
    private let store: BlobStore
    private let tempPath: String
    private var descriptor: Int32
    private var hasher = SHA256()
    /// Bytes written so far.
    public private(set) var byteCount: UInt64 = 0
    private var finished = false
    /// The byte count at the last ``sync()``; commit skips its fsync when nothing was written since.
    private var syncedCount: UInt64?

    fileprivate init(store: BlobStore) throws(StorageError) {
        self.store = store
        self.tempPath = "\(store.root)/tmp/\(Identifier.randomBase32(count: 20)).part"
        let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw .io("open \(tempPath): \(FileSystem.errnoText())") }
        self.descriptor = fd
    }

    deinit {
        if !finished {
            close(descriptor)
            unlink(tempPath)
        }
    }

    /// Appends bytes.
    public func write(_ bytes: some ContiguousBytes) throws(StorageError) {
        precondition(!finished, "write after commit or abort")
        let result: Result<Void, StorageError> = bytes.withUnsafeBytes { buffer in
            hasher.update(bufferPointer: buffer)
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return .failure(.io("write \(tempPath): \(FileSystem.errnoText())"))
                }
                offset += n
            }
            return .success(())
        }
        try result.get()
        byteCount += UInt64(bytes.withUnsafeBytes { $0.count })
    }

    /// The lower-case hex SHA-256 of the bytes written so far.
    public var sha256: String { Hex.encode(hasher.finalize()) }

    /// Bytes written so far, read back from the temp file (`length` from `offset`, fewer at the end): what will
    /// be stored, for a caller that checks the content before committing it.
    public func contents(offset: UInt64 = 0, length: Int = .max) throws(StorageError) -> [UInt8] {
        precondition(!finished, "contents after commit or abort")
        guard offset <= byteCount else { throw .rangeOutOfBounds("offset \(offset) is past the \(byteCount) bytes written") }
        let fd = open(tempPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io("open \(tempPath): \(FileSystem.errnoText())") }
        defer { close(fd) }
        let count = Int(min(UInt64(length), byteCount - offset))
        var failure: StorageError?
        // Not zero-filled first: pread overwrites every byte, and on a failure none is handed out.
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var done = 0
            while done < count {
                let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = .io("pread \(tempPath): \(FileSystem.errnoText())")
                    break
                }
                if n == 0 {
                    failure = .io("\(tempPath) is shorter than the bytes written")
                    break
                }
                done += n
            }
            initialized = failure == nil ? count : 0
        }
        if let failure { throw failure }
        return bytes
    }

    /// Makes the blob durable and visible: fsync, rename to its digest, fsync the directory.
    ///
    /// - Parameters:
    ///   - expectedSHA256: when set, a different digest discards the bytes and throws `digestMismatch`.
    ///   - expectedSize: when set, a different size discards the bytes and throws `sizeMismatch`.
    /// - Returns: the digest, size, and whether the blob was already stored (the new copy is then dropped).
    public func commit(expectingSHA256 expectedSHA256: String? = nil, size expectedSize: UInt64? = nil) throws(StorageError) -> BlobCommit {
        precondition(!finished, "commit after commit or abort")
        let digest = Hex.encode(hasher.finalize())
        if let expectedSize, expectedSize != byteCount {
            abort()
            throw .sizeMismatch("expected \(expectedSize) bytes, received \(byteCount)")
        }
        if let expectedSHA256, expectedSHA256 != digest {
            abort()
            throw .digestMismatch("expected \(expectedSHA256), received \(digest)")
        }
        finished = true
        defer { close(descriptor) }
        let finalPath = try store.path(for: digest)
        let directory = String(finalPath[..<finalPath.lastIndex(of: "/")!])
        if FileSystem.size(ofExisting: finalPath) == byteCount {
            unlink(tempPath)
            // Another upload may have renamed it a moment ago and not yet synced the directory: sync it here
            // too, so that this caller is never acknowledged ahead of the bytes being durable.
            try FileSystem.syncDirectory(directory)
            return BlobCommit(sha256: digest, size: byteCount, alreadyStored: true)
        }
        guard syncedCount == byteCount || fsync(descriptor) == 0 else {
            unlink(tempPath)
            throw .io("fsync \(tempPath): \(FileSystem.errnoText())")
        }
        // `sha256/ab/cd/`: a directory created here is only durable once its parent is synced too.
        let parent = String(directory[..<directory.lastIndex(of: "/")!])
        let created = (parent: FileSystem.size(ofExisting: parent) == nil, leaf: FileSystem.size(ofExisting: directory) == nil)
        // Plain mkdir(2) for the one or two missing levels (the store's root exists): another upload may create
        // the same directory at the same moment, which is fine.
        for (missing, path) in [(created.parent, parent), (created.leaf, directory)] where missing {
            guard mkdir(path, 0o750) == 0 || errno == EEXIST else {
                let problem = "mkdir \(path): \(FileSystem.errnoText())"
                unlink(tempPath)
                throw .io(problem)
            }
        }
        guard rename(tempPath, finalPath) == 0 else {
            unlink(tempPath)
            throw .io("rename \(tempPath) -> \(finalPath): \(FileSystem.errnoText())")
        }
        try FileSystem.syncDirectory(directory)
        if created.leaf { try FileSystem.syncDirectory(parent) }
        if created.parent { try FileSystem.syncDirectory(String(parent[..<parent.lastIndex(of: "/")!])) }
        return BlobCommit(sha256: digest, size: byteCount, alreadyStored: false)
    }

    /// fsyncs the bytes written so far, on the calling thread; ``commit(expectingSHA256:size:)`` then skips its own
    /// fsync unless more was written.
    public func sync() throws(StorageError) {
        precondition(!finished, "sync after commit or abort")
        guard fsync(descriptor) == 0 else { throw .io("fsync \(tempPath): \(FileSystem.errnoText())") }
        syncedCount = byteCount
    }

    /// ``commit(expectingSHA256:size:)`` on a dispatch queue, so that its fsyncs (milliseconds each) never
    /// block one of the few threads that run Swift tasks. The caller must not touch the writer meanwhile.
    public func commitOffloaded(expectingSHA256 expectedSHA256: String? = nil, size expectedSize: UInt64? = nil) async throws(StorageError) -> BlobCommit {
        nonisolated(unsafe) let writer = self
        let result: Result<BlobCommit, StorageError> = await withCheckedContinuation { continuation in
            DispatchQueue.global(qos: .userInitiated).async {
                continuation.resume(returning: Result { () throws(StorageError) in
                    try writer.commit(expectingSHA256: expectedSHA256, size: expectedSize)
                })
            }
        }
        return try result.get()
    }

    /// Discards everything written.
    public func abort() {
        guard !finished else { return }
        finished = true
        close(descriptor)
        unlink(tempPath)
    }
}

/// The result of committing a blob.
public struct BlobCommit: Sendable, Hashable {
    /// Lower-case hex SHA-256 of the bytes.
    public var sha256: String
    /// Number of bytes.
    public var size: UInt64
    /// True when the store already held these bytes; nothing new was written.
    public var alreadyStored: Bool
}

/// Reads a stored blob by byte range. Blobs are immutable, so a reader never sees a change.
public final class BlobReader: Sendable {
    private let descriptor: Int32
    /// The blob's size in bytes.
    public let size: UInt64

    fileprivate init(path: String) throws(StorageError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw .notFound("no blob at \(path)") }
            throw .io("open \(path): \(FileSystem.errnoText())")
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            close(fd)
            throw .io("fstat \(path): \(FileSystem.errnoText())")
        }
        self.descriptor = fd
        self.size = UInt64(info.st_size)
    }

    deinit { close(descriptor) }

    /// Reads into `buffer` from `offset` until it is full or the blob ends; returns the number of bytes read.
    public func read(offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(StorageError) -> Int {
        guard offset <= size else { throw .rangeOutOfBounds("offset \(offset) is past the end (\(size))") }
        let count = Int(min(UInt64(buffer.count), size - offset))
        var done = 0
        while done < count {
            let n = pread(descriptor, buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .io(n < 0 ? "pread: \(FileSystem.errnoText())" : "blob shorter than its recorded size") }
            done += n
        }
        return count
    }

    /// The whole blob as bytes, read straight into the array (no zero-fill, no copy through `Data`).
    public func readAll() throws(StorageError) -> [UInt8] {
        let count = Int(size)
        var failure: StorageError?
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            do throws(StorageError) {
                initialized = try read(offset: 0, into: UnsafeMutableRawBufferPointer(buffer))
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return bytes
    }

    /// Reads up to `length` bytes at `offset`; fewer only at the end of the blob, none at the end.
    public func read(offset: UInt64, length: Int) throws(StorageError) -> Data {
        guard offset <= size else { throw .rangeOutOfBounds("offset \(offset) is past the end (\(size))") }
        guard length >= 0 else { throw .rangeOutOfBounds("a negative length (\(length))") }
        let count = Int(min(UInt64(length), size - offset))
        guard count > 0 else { return Data() }
        // Not zero-filled first: pread overwrites every byte before the data is handed out.
        let memory = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 16)
        do {
            _ = try read(offset: offset, into: UnsafeMutableRawBufferPointer(start: memory, count: count))
        } catch {
            memory.deallocate()
            throw error
        }
        return Data(bytesNoCopy: memory, count: count, deallocator: .custom { pointer, _ in pointer.deallocate() })
    }
}
