public import Foundation

/// What the registry indexes about an image, read from its data set (ARCHITECTURE.md §4).
public struct ImageMetadata: Sendable, Equatable {
    /// Patient ID (0010,0020); `nil` when absent or empty.
    public var patientID: String?
    /// Patient's Name (0010,0010), decoded with the data set's character set; `nil` when absent or empty.
    public var patientName: String?
    /// Study Instance UID (0020,000D); `nil` when absent or empty.
    public var studyInstanceUID: String?
    /// Series Instance UID (0020,000E); `nil` when absent or empty.
    public var seriesInstanceUID: String?
    /// SOP Instance UID (0008,0018), else the file meta's Media Storage SOP Instance UID (0002,0003).
    public var sopInstanceUID: String?
    /// SOP Class UID (0008,0016), else the file meta's Media Storage SOP Class UID (0002,0002).
    public var sopClassUID: String?
    /// Modality (0008,0060), e.g. `CT` or `MR`; `nil` when absent or empty.
    public var modality: String?
    /// From Acquisition DateTime, else Acquisition Date + Time, else Content, else Study (no time zone: UTC).
    public var acquiredAt: Date?
    /// Station Name, else Device Serial Number.
    public var deviceID: String?
    /// Body Part Examined (0018,0015), e.g. `CHEST`; `nil` when absent or empty.
    public var bodyPart: String?
    /// Rows (0028,0010): the image height in pixels; `nil` when absent.
    public var rows: Int?
    /// Columns (0028,0011): the image width in pixels; `nil` when absent.
    public var columns: Int?
    /// Bits Allocated (0028,0100): bits per sample; `nil` when absent.
    public var bitsAllocated: Int?
    /// Number of Frames (0028,0008), 1 when absent; `nil` when the object has no Pixel Data (7FE0,0010).
    public var frames: Int?
    /// The UID of the transfer syntax the object was read in (implicit VR little endian for a bare data set).
    public var transferSyntaxUID: String
    /// Instance Number (0020,0013).
    public var instanceNumber: Int?
    /// Image Position (Patient) projected onto the slice normal (the cross product of the two Image
    /// Orientation (Patient) direction cosines), in mm: the slice's place in its series.
    public var slicePosition: Double?

    /// The metadata of a parsed file.
    public init(_ file: DICOMFile) {
        let data = file.dataset
        patientID = data.string(.patientID)
        patientName = data.string(.patientName)
        studyInstanceUID = data.string(.studyInstanceUID)
        seriesInstanceUID = data.string(.seriesInstanceUID)
        sopInstanceUID = data.string(.sopInstanceUID) ?? file.meta.string(.mediaStorageSOPInstanceUID)
        sopClassUID = data.string(.sopClassUID) ?? file.meta.string(.mediaStorageSOPClassUID)
        modality = data.string(.modality)
        acquiredAt =
            data.string(.acquisitionDateTime).flatMap { Self.dateTime($0) }
            ?? Self.date(data.string(.acquisitionDate), time: data.string(.acquisitionTime))
            ?? Self.date(data.string(.contentDate), time: data.string(.contentTime))
            ?? Self.date(data.string(.studyDate), time: data.string(.studyTime))
        deviceID = data.string(.stationName) ?? data.string(.deviceSerialNumber)
        bodyPart = data.string(.bodyPartExamined)
        rows = data.integer(.rows)
        columns = data.integer(.columns)
        bitsAllocated = data.integer(.bitsAllocated)
        frames = data[.pixelData] == nil ? nil : (data.integer(.numberOfFrames) ?? 1)
        transferSyntaxUID = file.transferSyntax.uid
        instanceNumber = data.integer(.instanceNumber)
        slicePosition = Self.slicePosition(position: data.doubles(.imagePositionPatient), orientation: data.doubles(.imageOrientationPatient))
    }

    /// Text fields cut to `bytes` UTF-8 bytes at most (at a character boundary): DICOM's own limits are far
    /// below this, so only a hostile object is cut, and the index stays small whatever it holds.
    public mutating func limitText(to bytes: Int = 256) {
        func cut(_ text: String?) -> String? {
            guard let text, text.utf8.count > bytes else { return text }
            var result = ""
            for character in text {
                guard result.utf8.count + character.utf8.count <= bytes else { break }
                result.append(character)
            }
            return result
        }
        patientID = cut(patientID)
        patientName = cut(patientName)
        modality = cut(modality)
        deviceID = cut(deviceID)
        bodyPart = cut(bodyPart)
        sopClassUID = cut(sopClassUID)
    }

    /// `position · (row × column)`, or `nil` unless both are complete and finite.
    static func slicePosition(position: [Double], orientation: [Double]) -> Double? {
        guard position.count >= 3, orientation.count >= 6, (position[0..<3] + orientation[0..<6]).allSatisfy(\.isFinite) else { return nil }
        let (r, c) = (orientation[0..<3].map { $0 }, orientation[3..<6].map { $0 })
        let normal = [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]]
        let value = position[0] * normal[0] + position[1] * normal[1] + position[2] * normal[2]
        return value.isFinite ? value : nil
    }

    /// A DA (`YYYYMMDD`) and optional TM (`HHMMSS.FFFFFF`, any prefix of it), as UTC.
    static func date(_ date: String?, time: String?) -> Date? {
        guard let date, date.utf8.count == 8, date.allSatisfy(\.isASCII), let year = Int(date.prefix(4)),
            let month = Int(date.dropFirst(4).prefix(2)), let day = Int(date.suffix(2))
        else { return nil }
        var components = DateComponents(timeZone: TimeZone(identifier: "UTC"), year: year, month: month, day: day)
        if let time = time?.split(separator: ".", maxSplits: 1), let whole = time.first, whole.allSatisfy(\.isNumber), whole.count % 2 == 0 {
            let digits = Array(whole)
            if digits.count >= 2 { components.hour = Int(String(digits[0..<2])) }
            if digits.count >= 4 { components.minute = Int(String(digits[2..<4])) }
            if digits.count >= 6 { components.second = Int(String(digits[4..<6])) }
            if time.count == 2, let fraction = Double("0." + time[1]) { components.nanosecond = Int(fraction * 1e9) }
        }
        guard (1...12).contains(month), (1...31).contains(day), (components.hour ?? 0) < 24, (components.minute ?? 0) < 60,
            (components.second ?? 0) < 61
        else { return nil }
        return Calendar(identifier: .gregorian).date(from: components)
    }

    /// A DT value (`YYYYMMDDHHMMSS.FFFFFF&ZZXX`); the offset, when present, is applied.
    static func dateTime(_ text: String) -> Date? {
        var body = Substring(text)
        var offset = 0
        if let sign = body.lastIndex(where: { $0 == "+" || $0 == "-" }), body.distance(from: sign, to: body.endIndex) == 5,
            let hours = Int(body[body.index(after: sign)...].prefix(2)), let minutes = Int(body.suffix(2))
        {
            offset = (hours * 3600 + minutes * 60) * (body[sign] == "-" ? -1 : 1)
            body = body[..<sign]
        }
        guard body.count >= 8 else { return nil }
        let date = String(body.prefix(8))
        let time = body.count > 8 ? String(body.dropFirst(8)) : nil
        return Self.date(date, time: time).map { $0.addingTimeInterval(TimeInterval(-offset)) }
    }
}
