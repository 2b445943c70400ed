import Foundation

/// The specific character set (0008,0005) of a data set, and the decoding of its text.
///
/// Supported: the default repertoire (ASCII; bytes above 127 are read as Latin-1 rather than refused),
/// ISO_IR 100 (Latin-1), ISO_IR 192 (UTF-8), and the ISO 2022 code extensions for Japanese: ISO 2022 IR 6
/// (ASCII), IR 13 (JIS X 0201: romaji in G0, half-width katakana in G1) and IR 87 (JIS X 0208 kanji, through
/// Foundation's ISO-2022-JP decoder). Escape sequences are honoured byte by byte, so `=` and `^` inside a
/// two-byte run are never taken for delimiters.
public struct DICOMCharacterSet: Sendable, Hashable {
    enum Kind: Sendable, Hashable {
        case ascii
        case latin1
        case utf8
        /// ISO 2022 with Japanese extensions; `katakanaG1` when IR 13 is in force (bytes 0xA1–0xDF are katakana).
        case iso2022Japanese(katakanaG1: Bool)
    }

    let kind: Kind

    /// The default repertoire (ASCII, bytes above 127 read as Latin-1), in force when a data set has no
    /// Specific Character Set (0008,0005).
    public static let `default` = DICOMCharacterSet(kind: .ascii)

    /// The character set named by the values of (0008,0005).
    public init(terms: [String]) {
        let names = terms.map { $0.trimmingCharacters(in: .whitespaces) }
        if names.contains(where: { $0.hasPrefix("ISO 2022") }) || names.contains("ISO_IR 13") {
            kind = .iso2022Japanese(katakanaG1: names.contains { $0 == "ISO 2022 IR 13" || $0 == "ISO_IR 13" })
        } else if names.contains("ISO_IR 192") {
            kind = .utf8
        } else if names.contains(where: { $0 == "ISO_IR 100" || $0 == "ISO_IR 101" || $0 == "ISO_IR 148" }) {
            kind = .latin1
        } else {
            kind = .ascii
        }
    }

    init(kind: Kind) {
        self.kind = kind
    }

    /// Decodes text bytes (padding already removed).
    func decode(_ bytes: ArraySlice<UInt8>, personName: Bool) -> String {
        switch kind {
        case .utf8:
            return String(decoding: bytes, as: UTF8.self)
        case .ascii, .latin1:
            if bytes.allSatisfy({ $0 < 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
            return String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
        case .iso2022Japanese(let katakanaG1):
            return Self.decodeISO2022(bytes, katakanaG1: katakanaG1)
        }
    }

    private enum Mode { case ascii, roman, kanji }

    private static func decodeISO2022(_ bytes: ArraySlice<UInt8>, katakanaG1: Bool) -> String {
        var output = ""
        var mode = Mode.ascii
        var kanji: [UInt8] = []
        func flushKanji() {
            guard !kanji.isEmpty else { return }
            let wrapped = Data([0x1B, 0x24, 0x42] + kanji + [0x1B, 0x28, 0x42])
            output += String(data: wrapped, encoding: .iso2022JP) ?? String(repeating: "\u{FFFD}", count: kanji.count / 2)
            kanji.removeAll()
        }
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == 0x1B, index + 2 < bytes.endIndex {
                let a = bytes[index + 1], b = bytes[index + 2]
                flushKanji()
                switch (a, b) {
                case (0x24, 0x42), (0x24, 0x40): mode = .kanji
                case (0x28, 0x42): mode = .ascii
                case (0x28, 0x4A): mode = .roman
                default: break  // G1 designations (ESC ) I) need no state: 0xA1–0xDF are katakana when IR 13 is declared.
                }
                index += 3
                continue
            }
            if mode == .kanji, byte >= 0x21, byte <= 0x7E, index + 1 < bytes.endIndex {
                kanji.append(byte)
                kanji.append(bytes[index + 1])
                index += 2
                continue
            }
            flushKanji()
            if katakanaG1, (0xA1...0xDF).contains(byte) {
                output.unicodeScalars.append(Unicode.Scalar(0xFF61 + UInt32(byte - 0xA1))!)
            } else if byte < 0x80 {
                output.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                output.unicodeScalars.append("\u{FFFD}")
            }
            // Delimiters return to the default repertoire (PS3.5 6.1.2.5.3).
            if byte == 0x5E || byte == 0x3D || byte == 0x5C || byte == 0x0D || byte == 0x0A { mode = .ascii }
            index += 1
        }
        flushKanji()
        return output
    }
}
