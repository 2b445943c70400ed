public import GRDB

/// Opens the SQLite database of one service: one file, WAL mode, full fsync on commit, named migrations.
///
/// `synchronous = FULL` makes each commit durable before it returns, so a service acknowledges only what
/// survives a power cut. Migrations are registered by the service and are never edited once landed.
public enum ServiceDatabase {
    /// What a commit survives once it returns.
    public enum Durability: Sendable {
        /// A power cut (`synchronous = FULL`: the write-ahead log is fsynced at each commit). The default.
        case powerLoss
        /// The process being killed, not a power cut (`synchronous = NORMAL`: the log is written at each commit
        /// but fsynced only at checkpoints). For records whose loss costs little and whose volume would make an
        /// fsync each too dear, e.g. usage events in an outbox.
        case processCrash
    }

    /// Opens (creating if needed) `path` and applies the migrations.
    public static func open(path: String, migrator: DatabaseMigrator, durability: Durability = .powerLoss) throws -> DatabasePool {
        if let slash = path.lastIndex(of: "/") {
            try FileSystem.makeDirectories(String(path[..<slash]))
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: durability == .powerLoss ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL")
            // Statement journals (a savepoint's undo, which group commits use per write) and sorts stay in memory:
            // they never need to survive the process, and as temp files they cost a write each page.
            try db.execute(sql: "PRAGMA temp_store = MEMORY")
        }
        let pool = try DatabasePool(path: path, configuration: configuration)
        try migrator.migrate(pool)
        return pool
    }
}
