public import GRDB

/// Opens the SQLite database of one service: one file, WAL mode, full fsync on commit, named migrations.
///
/// `synchronous = FULL` makes each commit durable before it returns, so a service acknowledges only what
/// survives a power cut. Migrations are registered by the service and are never edited once landed.
public enum ServiceDatabase {
    /// Opens (creating if needed) `path` and applies the migrations.
    public static func open(path: String, migrator: DatabaseMigrator) throws -> DatabasePool {
        if let slash = path.lastIndex(of: "/") {
            try FileSystem.makeDirectories(String(path[..<slash]))
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        let pool = try DatabasePool(path: path, configuration: configuration)
        try migrator.migrate(pool)
        return pool
    }
}
