/// A DICOM value representation.
public enum VR: String, Sendable, CaseIterable {
    /// The two-letter VRs of PS3.5 Table 6.2-1; each raw value is the code as it is encoded.
    case AE, AS, AT, CS, DA, DS, DT, FD, FL, IS, LO, LT, OB, OD, OF, OL, OV, OW, PN, SH, SL, SQ, SS, ST, SV, TM, UC, UI, UL, UN, UR, US, UT, UV

    /// The VR from its two ASCII bytes, if they name one.
    init?(bytes first: UInt8, _ second: UInt8) {
        guard (65...90).contains(first), (65...90).contains(second) else { return nil }
        self.init(rawValue: String(decoding: [first, second], as: UTF8.self))
    }

    /// In explicit VR syntaxes, these VRs have 2 reserved bytes and a 4-byte length; the rest a 2-byte length.
    var hasLongLength: Bool {
        switch self {
        case .OB, .OD, .OF, .OL, .OV, .OW, .SQ, .UC, .UN, .UR, .UT, .SV, .UV: true
        default: false
        }
    }

    /// Whether the value is text (padded with spaces, or NUL for UI).
    public var isText: Bool {
        switch self {
        case .AE, .AS, .CS, .DA, .DS, .DT, .IS, .LO, .LT, .PN, .SH, .ST, .TM, .UC, .UI, .UR, .UT: true
        default: false
        }
    }

    /// Whether the value's text is decoded with the specific character set (the rest is always ASCII).
    var usesCharacterSet: Bool {
        switch self {
        case .LO, .LT, .PN, .SH, .ST, .UC, .UT: true
        default: false
        }
    }

    /// The size of one binary number of this VR, for byte swapping; `nil` for text and bytes. An AT value is
    /// swapped as two 16-bit halves (group, element).
    var numberWidth: Int? {
        switch self {
        case .US, .SS, .AT: 2
        case .UL, .SL, .FL, .OF, .OL: 4
        case .FD, .OD, .SV, .UV, .OV: 8
        case .OW: 2
        default: nil
        }
    }
}
