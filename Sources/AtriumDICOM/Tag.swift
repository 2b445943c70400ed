/// A DICOM attribute tag: (group, element).
public struct DICOMTag: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let group: UInt16
    public let element: UInt16

    public init(_ group: UInt16, _ element: UInt16) {
        self.group = group
        self.element = element
    }

    /// The tag as one 32-bit number, group in the high half.
    public var value: UInt32 { UInt32(group) << 16 | UInt32(element) }

    /// Private tags have an odd group number.
    public var isPrivate: Bool { group & 1 == 1 }

    public var description: String {
        "(\(Self.hex(group)),\(Self.hex(element)))"
    }

    private static func hex(_ value: UInt16) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: 4 - digits.count) + digits
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.value < rhs.value }
}

extension DICOMTag {
    // Delimiters (always encoded as implicit VR: tag and a 4-byte length).
    public static let item = DICOMTag(0xFFFE, 0xE000)
    public static let itemDelimitation = DICOMTag(0xFFFE, 0xE00D)
    public static let sequenceDelimitation = DICOMTag(0xFFFE, 0xE0DD)

    // File meta.
    public static let fileMetaInformationGroupLength = DICOMTag(0x0002, 0x0000)
    public static let mediaStorageSOPClassUID = DICOMTag(0x0002, 0x0002)
    public static let mediaStorageSOPInstanceUID = DICOMTag(0x0002, 0x0003)
    public static let transferSyntaxUID = DICOMTag(0x0002, 0x0010)

    // Identification and patient.
    public static let specificCharacterSet = DICOMTag(0x0008, 0x0005)
    public static let sopClassUID = DICOMTag(0x0008, 0x0016)
    public static let sopInstanceUID = DICOMTag(0x0008, 0x0018)
    public static let studyDate = DICOMTag(0x0008, 0x0020)
    public static let acquisitionDate = DICOMTag(0x0008, 0x0022)
    public static let contentDate = DICOMTag(0x0008, 0x0023)
    public static let acquisitionDateTime = DICOMTag(0x0008, 0x002A)
    public static let studyTime = DICOMTag(0x0008, 0x0030)
    public static let acquisitionTime = DICOMTag(0x0008, 0x0032)
    public static let contentTime = DICOMTag(0x0008, 0x0033)
    public static let modality = DICOMTag(0x0008, 0x0060)
    public static let manufacturer = DICOMTag(0x0008, 0x0070)
    public static let stationName = DICOMTag(0x0008, 0x1010)
    public static let manufacturerModelName = DICOMTag(0x0008, 0x1090)
    public static let patientName = DICOMTag(0x0010, 0x0010)
    public static let patientID = DICOMTag(0x0010, 0x0020)
    public static let bodyPartExamined = DICOMTag(0x0018, 0x0015)
    public static let deviceSerialNumber = DICOMTag(0x0018, 0x1000)
    public static let studyInstanceUID = DICOMTag(0x0020, 0x000D)
    public static let seriesInstanceUID = DICOMTag(0x0020, 0x000E)
    public static let instanceNumber = DICOMTag(0x0020, 0x0013)
    public static let imagePositionPatient = DICOMTag(0x0020, 0x0032)
    public static let imageOrientationPatient = DICOMTag(0x0020, 0x0037)
    public static let derivationDescription = DICOMTag(0x0008, 0x2111)
    public static let imageComments = DICOMTag(0x0020, 0x4000)

    // Image pixel module.
    public static let samplesPerPixel = DICOMTag(0x0028, 0x0002)
    public static let photometricInterpretation = DICOMTag(0x0028, 0x0004)
    public static let planarConfiguration = DICOMTag(0x0028, 0x0006)
    public static let numberOfFrames = DICOMTag(0x0028, 0x0008)
    public static let rows = DICOMTag(0x0028, 0x0010)
    public static let columns = DICOMTag(0x0028, 0x0011)
    public static let pixelSpacing = DICOMTag(0x0028, 0x0030)
    public static let pixelAspectRatio = DICOMTag(0x0028, 0x0034)
    public static let bitsAllocated = DICOMTag(0x0028, 0x0100)
    public static let bitsStored = DICOMTag(0x0028, 0x0101)
    public static let highBit = DICOMTag(0x0028, 0x0102)
    public static let pixelRepresentation = DICOMTag(0x0028, 0x0103)
    public static let windowCenter = DICOMTag(0x0028, 0x1050)
    public static let windowWidth = DICOMTag(0x0028, 0x1051)
    public static let rescaleIntercept = DICOMTag(0x0028, 0x1052)
    public static let rescaleSlope = DICOMTag(0x0028, 0x1053)
    public static let pixelData = DICOMTag(0x7FE0, 0x0010)
}
