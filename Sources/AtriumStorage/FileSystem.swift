import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Small POSIX helpers for the stores: explicit errors, fsync of directories, no hidden buffering.
package enum FileSystem {
    /// `strerror(errno)` for the current errno.
    package static func errnoText() -> String {
        String(cString: strerror(errno))
    }

    /// Creates a directory and its parents (mode 0750).
    package static func makeDirectories(_ path: String) throws(StorageError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        } catch {
            throw .io("mkdir \(path): \(error)")
        }
    }

    /// The size of a regular file, or `nil` when there is none.
    package static func size(of path: String) throws(StorageError) -> UInt64? {
        var info = stat()
        if stat(path, &info) == 0 { return UInt64(info.st_size) }
        if errno == ENOENT || errno == ENOTDIR { return nil }
        throw .io("stat \(path): \(errnoText())")
    }

    /// The size of a file, or `nil` for any failure.
    package static func size(ofExisting path: String) -> UInt64? {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_size) : nil
    }

    /// Names in a directory (empty when it does not exist).
    package static func list(_ path: String) throws(StorageError) -> [String] {
        guard let dir = opendir(path) else {
            if errno == ENOENT { return [] }
            throw .io("opendir \(path): \(errnoText())")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// fsyncs a directory, so that a rename into it survives a crash.
    package static func syncDirectory(_ path: String) throws(StorageError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .io("open \(path): \(errnoText())") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw .io("fsync \(path): \(errnoText())") }
    }
}
