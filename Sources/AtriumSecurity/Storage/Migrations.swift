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
        migrator.registerMigration("v2 patients, enrolment, certificates, storage, usage, notifications, audit") { db in
            try db.create(table: "subscriber_patient") { t in
                t.column("subscriber_id", .text).notNull().references("subscriber", onDelete: .cascade)
                t.column("patient_id", .text).notNull().indexed()
                t.primaryKey(["subscriber_id", "patient_id"])
            }
            try db.create(table: "enrollment_token") { t in
                t.primaryKey("token_hash", .blob)
                t.column("subscriber_id", .text).notNull().indexed().references("subscriber", onDelete: .restrict)
                t.column("created_at", .datetime).notNull()
                t.column("expires_at", .datetime).notNull()
                t.column("used_at", .datetime)
            }
            try db.create(table: "certificate") { t in
                t.primaryKey("serial", .text)
                t.column("subscriber_id", .text).notNull().indexed().references("subscriber", onDelete: .restrict)
                t.column("sha256", .text).notNull().unique()
                t.column("not_before", .datetime).notNull()
                t.column("not_after", .datetime).notNull()
                t.column("revoked_at", .datetime)
            }
            try db.create(table: "storage_account") { t in
                t.primaryKey("subscriber_id", .text).references("subscriber", onDelete: .restrict)
                t.column("used_bytes", .integer).notNull()
                t.column("last_change_at", .datetime).notNull()
                // Whether used + reserved was at or above the warning threshold at the last change.
                t.column("warning", .boolean).notNull()
            }
            try db.create(table: "storage_reservation") { t in
                t.primaryKey("id", .text)
                t.column("subscriber_id", .text).notNull().indexed().references("subscriber", onDelete: .restrict)
                t.column("bytes", .integer).notNull()
                t.column("expires_at", .datetime).notNull()
                // Set when the reservation was committed or released; kept so that a retried settle is answered
                // the same way.
                t.column("settled_at", .datetime)
            }
            // Stored bytes integrated over time, per calendar month, in byte-milliseconds: whole units of 10^9
            // byte-milliseconds plus the remainder, so that a petabyte archive cannot overflow and nothing is rounded.
            try db.create(table: "storage_period") { t in
                t.column("subscriber_id", .text).notNull().references("subscriber", onDelete: .restrict)
                t.column("period", .text).notNull()
                t.column("giga_byte_ms", .integer).notNull()
                t.column("remainder_byte_ms", .integer).notNull()
                t.primaryKey(["subscriber_id", "period"])
            }
            try db.create(table: "usage_event") { t in
                t.primaryKey("event_id", .text)
                t.column("subscriber_id", .text).notNull().references("subscriber", onDelete: .restrict)
                t.column("period", .text).notNull()
                t.column("time", .datetime).notNull()
                t.column("stored_bytes_delta", .integer).notNull().defaults(to: 0)
                t.column("deliveries", .integer).notNull().defaults(to: 0)
                t.column("delivered_bytes", .integer).notNull().defaults(to: 0)
                t.column("processed_images", .integer).notNull().defaults(to: 0)
                t.column("processed_bytes", .integer).notNull().defaults(to: 0)
                t.column("cpu_milliseconds", .integer).notNull().defaults(to: 0)
            }
            try db.create(index: "usage_event_by_period", on: "usage_event", columns: ["subscriber_id", "period"])
            try db.create(table: "notification") { t in
                t.primaryKey("id", .text)
                t.column("subscriber_id", .text).notNull().references("subscriber", onDelete: .restrict)
                t.column("kind", .text).notNull()
                t.column("message", .text).notNull()
                t.column("created_at", .datetime).notNull()
            }
            try db.create(index: "notification_by_subscriber", on: "notification", columns: ["subscriber_id", "created_at"])
            try db.create(table: "audit") { t in
                t.primaryKey("sequence", .integer)
                t.column("time_ms", .integer).notNull()
                t.column("subscriber_id", .text).notNull().indexed()
                t.column("method", .text).notNull()
                t.column("resource_id", .text).notNull().indexed()
                t.column("resource_owner_id", .text).notNull().indexed()
                t.column("patient_id", .text).notNull().indexed()
                t.column("outcome", .text).notNull()
                t.column("request_id", .text).notNull()
                t.column("hash", .text).notNull()
            }
            // The service only appends. These stop an accidental UPDATE or DELETE; a deliberate edit that drops them
            // is what the hash chain detects.
            try db.execute(
                sql: """
                    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                    """
            )
        }
        // Queries by method and by request ID (the gateway's entry and the services' entries for one call).
        migrator.registerMigration("v3 audit by method and request") { db in
            try db.create(index: "audit_by_method", on: "audit", columns: ["method"])
            try db.create(index: "audit_by_request", on: "audit", columns: ["request_id"])
        }
        return migrator
    }
}
