public import GRDB
import Synchronization

/// A record whose columns are its properties' names in snake case, acronyms kept whole: `registrantID` is
/// `registrant_id`, `sopInstanceUID` `sop_instance_uid`, `thumbnailSHA256` `thumbnail_sha256`, `inputImageIDs`
/// `input_image_ids`. GRDB's own `.convertToSnakeCase` would write `input_image_i_ds` and read `registrant_id` back as
/// `registrantId`, so the records use this instead of a hand-written `CodingKeys` list.
///
/// A column whose name is an abbreviation rather than the property's snake case (`idx` for `index`, `time_ms` for
/// `timeMilliseconds`) is named in ``columnRenames``.
public protocol SnakeCaseColumns: FetchableRecord, EncodableRecord {
    /// Columns not named by the rule: property name → column name.
    static var columnRenames: [String: String] { get }
}

extension SnakeCaseColumns {
    public static var columnRenames: [String: String] { [:] }

    public static var databaseColumnDecodingStrategy: DatabaseColumnDecodingStrategy {
        let renames = columnRenames
        return .custom { column in
            ColumnKey(stringValue: renames.first { $0.value == column }?.key ?? SnakeCase.property(column))
        }
    }

    public static var databaseColumnEncodingStrategy: DatabaseColumnEncodingStrategy {
        let renames = columnRenames
        return .custom { key in renames[key.stringValue] ?? SnakeCase.column(key.stringValue) }
    }
}

/// The coding key a column decodes into.
private struct ColumnKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// The snake-case rule of ``SnakeCaseColumns``, both ways, remembered per name (a row is decoded column by column).
public enum SnakeCase {
    /// Words written in capitals in a property name; each is one word of the column name.
    static let acronyms = ["SHA256", "UIDs", "UID", "IDs", "ID", "PNG"]
    private static let columns = Mutex<[String: String]>([:])
    private static let properties = Mutex<[String: String]>([:])

    /// The column for a property: `sopInstanceUID` → `sop_instance_uid`.
    public static func column(_ property: String) -> String {
        if let known = columns.withLock({ $0[property] }) { return known }
        var words: [String] = []
        var rest = Substring(property)
        while !rest.isEmpty {
            if let acronym = acronyms.first(where: { rest.hasPrefix($0) }) {
                words.append(acronym.lowercased())
                rest = rest.dropFirst(acronym.count)
                continue
            }
            let head = rest.prefix(1)
            let tail = rest.dropFirst().prefix { !$0.isUppercase }
            words.append((head + tail).lowercased())
            rest = rest.dropFirst(1 + tail.count)
        }
        let column = words.joined(separator: "_")
        columns.withLock { $0[property] = column }
        return column
    }

    /// The property for a column: `sop_instance_uid` → `sopInstanceUID`.
    public static func property(_ column: String) -> String {
        if let known = properties.withLock({ $0[column] }) { return known }
        let words = column.split(separator: "_")
        var property = words.first.map(String.init) ?? ""
        for word in words.dropFirst() {
            property += acronyms.first { $0.lowercased() == word } ?? (word.prefix(1).uppercased() + word.dropFirst())
        }
        properties.withLock { $0[column] = property }
        return property
    }
}
