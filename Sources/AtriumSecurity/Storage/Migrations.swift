import GRDB

/// The security database's migrations, in order. Never edit one that has landed; add a new one.
enum SecurityMigrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1 subscribers, contracts, api keys") { db in
            try db.create(table: "subscriber") { t in
                t.primaryKey("id", .text)
                t.column("display_name", .text).notNull()
                t.column("kind", .integer).notNull()
                t.column("status", .integer).notNull()
                t.column("external_id", .text).unique()
                t.column("created_at", .datetime).notNull()
                t.column("status_changed_at", .datetime).notNull()
            }
            try db.create(table: "contract") { t in
                t.column("subscriber_id", .text).notNull().references("subscriber", onDelete: .restrict)
                t.column("version", .integer).notNull()
                t.column("roles", .text).notNull()
                t.column("terms", .blob).notNull()
                t.column("effective_from", .datetime).notNull()
                t.primaryKey(["subscriber_id", "version"])
            }
            try db.create(table: "api_key") { t in
                t.primaryKey("prefix", .text)
                t.column("subscriber_id", .text).notNull().indexed().references("subscriber", onDelete: .restrict)
                t.column("label", .text).notNull()
                t.column("salt", .blob).notNull()
                t.column("hash", .blob).notNull()
                t.column("created_at", .datetime).notNull()
                t.column("expires_at", .datetime)
                t.column("revoked_at", .datetime)
            }
        }
        return migrator
    }
}
