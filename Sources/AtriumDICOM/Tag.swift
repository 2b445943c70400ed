/// A DICOM attribute tag: (group, element).
public struct DICOMTag: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The group number, the high 16 bits of ``value``; odd for private tags.
    public let group: UInt16
    /// The element number within the group.
    public let element: UInt16

    /// The tag (`group`, `element`), e.g. `DICOMTag(0x0010, 0x0010)` for Patient's Name.
    public init(_ group: UInt16, _ element: UInt16) {
        self.group = group
        self.element = element
    }

    /// The tag as one 32-bit number, group in the high half.
    public var value: UInt32 { UInt32(group) << 16 | UInt32(element) }

    /// Private tags have an odd group number.
    public var isPrivate: Bool { group & 1 == 1 }

    /// The tag as `(GGGG,EEEE)` in upper-case hex, e.g. `(0010,0010)`.
    public var description: String {
        "(\(Self.hex(group)),\(Self.hex(element)))"
    }

    private static func hex(_ value: UInt16) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: 4 - digits.count) + digits
    }

    /// Orders tags by group, then element: the order in which data sets are encoded.
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.value < rhs.value }
}

extension DICOMTag {
    // Delimiters (always encoded as implicit VR: tag and a 4-byte length).
    /// Item (FFFE,E000): starts each sequence item, and each fragment of encapsulated pixel data.
    public static let item = DICOMTag(0xFFFE, 0xE000)
    /// Item Delimitation Item (FFFE,E00D): ends an item of undefined length.
    public static let itemDelimitation = DICOMTag(0xFFFE, 0xE00D)
    /// Sequence Delimitation Item (FFFE,E0DD): ends a sequence or encapsulated pixel data of undefined length.
    public static let sequenceDelimitation = DICOMTag(0xFFFE, 0xE0DD)

    // File meta.
    /// File Meta Information Group Length (0002,0000): the byte length of the rest of the file meta (UL).
    public static let fileMetaInformationGroupLength = DICOMTag(0x0002, 0x0000)
    /// Media Storage SOP Class UID (0002,0002): the file meta's copy of the SOP Class UID.
    public static let mediaStorageSOPClassUID = DICOMTag(0x0002, 0x0002)
    /// Media Storage SOP Instance UID (0002,0003): the file meta's copy of the SOP Instance UID.
    public static let mediaStorageSOPInstanceUID = DICOMTag(0x0002, 0x0003)
    /// Transfer Syntax UID (0002,0010): how the data set after the file meta is encoded.
    public static let transferSyntaxUID = DICOMTag(0x0002, 0x0010)

    // Identification and patient.
    /// Specific Character Set (0008,0005): the character repertoire of the data set's text.
    public static let specificCharacterSet = DICOMTag(0x0008, 0x0005)
    /// SOP Class UID (0008,0016): the kind of object, e.g. CT Image Storage.
    public static let sopClassUID = DICOMTag(0x0008, 0x0016)
    /// SOP Instance UID (0008,0018): the object's unique identifier.
    public static let sopInstanceUID = DICOMTag(0x0008, 0x0018)
    /// Study Date (0008,0020), `YYYYMMDD`.
    public static let studyDate = DICOMTag(0x0008, 0x0020)
    /// Acquisition Date (0008,0022), `YYYYMMDD`.
    public static let acquisitionDate = DICOMTag(0x0008, 0x0022)
    /// Content Date (0008,0023): when the image data was created, `YYYYMMDD`.
    public static let contentDate = DICOMTag(0x0008, 0x0023)
    /// Acquisition DateTime (0008,002A): date and time in one DT value.
    public static let acquisitionDateTime = DICOMTag(0x0008, 0x002A)
    /// Study Time (0008,0030), `HHMMSS.FFFFFF`.
    public static let studyTime = DICOMTag(0x0008, 0x0030)
    /// Acquisition Time (0008,0032), `HHMMSS.FFFFFF`.
    public static let acquisitionTime = DICOMTag(0x0008, 0x0032)
    /// Content Time (0008,0033), `HHMMSS.FFFFFF`.
    public static let contentTime = DICOMTag(0x0008, 0x0033)
    /// Modality (0008,0060): the kind of equipment, e.g. `CT` or `MR`.
    public static let modality = DICOMTag(0x0008, 0x0060)
    /// Manufacturer (0008,0070) of the equipment that made the object.
    public static let manufacturer = DICOMTag(0x0008, 0x0070)
    /// Station Name (0008,1010): the name of the modality that made the object.
    public static let stationName = DICOMTag(0x0008, 0x1010)
    /// Manufacturer's Model Name (0008,1090).
    public static let manufacturerModelName = DICOMTag(0x0008, 0x1090)
    /// Patient's Name (0010,0010), a PN value (`Family^Given^...`).
    public static let patientName = DICOMTag(0x0010, 0x0010)
    /// Patient ID (0010,0020).
    public static let patientID = DICOMTag(0x0010, 0x0020)
    /// Body Part Examined (0018,0015), e.g. `CHEST`.
    public static let bodyPartExamined = DICOMTag(0x0018, 0x0015)
    /// Device Serial Number (0018,1000) of the equipment that made the object.
    public static let deviceSerialNumber = DICOMTag(0x0018, 0x1000)
    /// Study Instance UID (0020,000D).
    public static let studyInstanceUID = DICOMTag(0x0020, 0x000D)
    /// Series Instance UID (0020,000E).
    public static let seriesInstanceUID = DICOMTag(0x0020, 0x000E)
    /// Instance Number (0020,0013): the image's number within its series.
    public static let instanceNumber = DICOMTag(0x0020, 0x0013)
    /// Image Position (Patient) (0020,0032): x, y, z of the first pixel's centre, in mm.
    public static let imagePositionPatient = DICOMTag(0x0020, 0x0032)
    /// Image Orientation (Patient) (0020,0037): the direction cosines of the first row and the first column.
    public static let imageOrientationPatient = DICOMTag(0x0020, 0x0037)
    /// Derivation Description (0008,2111): how a derived image was made from its sources.
    public static let derivationDescription = DICOMTag(0x0008, 0x2111)
    /// Image Comments (0020,4000).
    public static let imageComments = DICOMTag(0x0020, 0x4000)

    // Image pixel module.
    /// Samples per Pixel (0028,0002): 1 for monochrome or palette, 3 for colour.
    public static let samplesPerPixel = DICOMTag(0x0028, 0x0002)
    /// Photometric Interpretation (0028,0004), e.g. `MONOCHROME2` or `RGB`.
    public static let photometricInterpretation = DICOMTag(0x0028, 0x0004)
    /// Planar Configuration (0028,0006): 0 for interleaved colour samples, 1 for one plane per colour.
    public static let planarConfiguration = DICOMTag(0x0028, 0x0006)
    /// Number of Frames (0028,0008).
    public static let numberOfFrames = DICOMTag(0x0028, 0x0008)
    /// Rows (0028,0010): the image height in pixels.
    public static let rows = DICOMTag(0x0028, 0x0010)
    /// Columns (0028,0011): the image width in pixels.
    public static let columns = DICOMTag(0x0028, 0x0011)
    /// Pixel Spacing (0028,0030): the distance between rows, then between columns, in mm.
    public static let pixelSpacing = DICOMTag(0x0028, 0x0030)
    /// Pixel Aspect Ratio (0028,0034): vertical to horizontal pixel size, as two integers.
    public static let pixelAspectRatio = DICOMTag(0x0028, 0x0034)
    /// Bits Allocated (0028,0100): bits per sample, 8, 16 or 32.
    public static let bitsAllocated = DICOMTag(0x0028, 0x0100)
    /// Bits Stored (0028,0101): the bits of each sample that hold the value.
    public static let bitsStored = DICOMTag(0x0028, 0x0101)
    /// High Bit (0028,0102): the most significant bit of the stored value, normally Bits Stored − 1.
    public static let highBit = DICOMTag(0x0028, 0x0102)
    /// Pixel Representation (0028,0103): 0 for unsigned samples, 1 for two's complement.
    public static let pixelRepresentation = DICOMTag(0x0028, 0x0103)
    /// Window Center (0028,1050): the centre of the display window, in rescaled units.
    public static let windowCenter = DICOMTag(0x0028, 0x1050)
    /// Window Width (0028,1051): the width of the display window, in rescaled units.
    public static let windowWidth = DICOMTag(0x0028, 0x1051)
    /// Rescale Intercept (0028,1052): `b` in rescaled = slope × stored + `b` (e.g. −1024 for HU).
    public static let rescaleIntercept = DICOMTag(0x0028, 0x1052)
    /// Rescale Slope (0028,1053): the factor in rescaled = slope × stored + intercept.
    public static let rescaleSlope = DICOMTag(0x0028, 0x1053)
    /// Pixel Data (7FE0,0010): native samples, or encapsulated fragments.
    public static let pixelData = DICOMTag(0x7FE0, 0x0010)
}
