import AtriumTesting
import Foundation
import Testing

@testable import AtriumDICOM

@Suite("DICOM writer and metadata")
struct WriterTests {
    private func sample() throws -> [UInt8] {
        var writer = DICOMWriter()
        try writer.set(.specificCharacterSet, .CS, .text("ISO_IR 192"))
        try writer.set(.sopClassUID, .UI, .text("1.2.840.10008.5.1.4.1.1.7"))
        try writer.set(.sopInstanceUID, .UI, .text("2.25.1234567"))
        try writer.set(.studyInstanceUID, .UI, .text("2.25.1"))
        try writer.set(.seriesInstanceUID, .UI, .text("2.25.2"))
        try writer.set(.modality, .CS, .text("OT"))
        try writer.set(.patientName, .PN, .text("山田^太郎"))
        try writer.set(.patientID, .LO, .text("PAT-9"))
        try writer.set(.acquisitionDateTime, .DT, .text("20261129103000.5+0900"))
        try writer.set(.samplesPerPixel, .US, .uint16([1]))
        try writer.set(.photometricInterpretation, .CS, .text("MONOCHROME2"))
        try writer.set(.rows, .US, .uint16([2]))
        try writer.set(.columns, .US, .uint16([3]))
        try writer.set(.bitsAllocated, .US, .uint16([16]))
        try writer.set(.bitsStored, .US, .uint16([16]))
        try writer.set(.highBit, .US, .uint16([15]))
        try writer.set(.pixelRepresentation, .US, .uint16([0]))
        try writer.set(.pixelData, .OW, .bytes([1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 0xFF, 0xFF]))
        return writer.partTen(implementationClassUID: "2.25.99")
    }

    @Test("what the writer writes, the reader reads back")
    func roundTrip() throws {
        let file = try DICOMReader.read(try sample())
        #expect(file.transferSyntax == .explicitLittleEndian)
        #expect(file.meta.string(.mediaStorageSOPInstanceUID) == "2.25.1234567")
        #expect(file.dataset.string(.patientName) == "山田^太郎")
        let metadata = ImageMetadata(file)
        #expect(metadata.patientID == "PAT-9")
        #expect(metadata.sopInstanceUID == "2.25.1234567")
        #expect(metadata.rows == 2 && metadata.columns == 3 && metadata.frames == 1)
        #expect(metadata.acquiredAt == ISO8601DateFormatter().date(from: "2026-11-29T01:30:00Z")!.addingTimeInterval(0.5))
        let pixels = try PixelDecoder.decode(file)
        #expect(pixels.bytes == [1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 0xFF, 0xFF])
    }

    @Test("pydicom reads what the writer writes")
    func pydicomReadsIt() throws {
        let directory = try TemporaryDirectory(prefix: "atrium-dicom-writer")
        let path = "\(directory.path)/written.dcm"
        try Data(try sample()).write(to: URL(fileURLWithPath: path))
        let (status, output) = try python(
            "import pydicom,sys; d=pydicom.dcmread(sys.argv[1]); print(d.PatientName, d.PatientID, d.Rows, d.Columns, d.pixel_array.tolist(), d.file_meta.TransferSyntaxUID)",
            [path]
        )
        #expect(status == 0, "\(output)")
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == "山田^太郎 PAT-9 2 3 [[1, 2, 3], [4, 5, 65535]] 1.2.840.10008.1.2.1")
    }

    @Test("a value too long for its VR is refused, not truncated")
    func tooLong() {
        var writer = DICOMWriter()
        #expect(throws: DICOMError.self) { try writer.set(.patientID, .LO, .text(String(repeating: "x", count: 70_000))) }
    }

    @Test("dates and times: DA + TM, partial times, DT with an offset, and nonsense", arguments: [
        ("20261129", "101530.25", "2026-11-29T10:15:30.250Z"),
        ("20261129", "10", "2026-11-29T10:00:00.000Z"),
        ("20261129", nil, "2026-11-29T00:00:00.000Z"),
        ("20261329", nil, nil), ("2026-11-29", nil, nil), ("20261129", "2561", nil),
    ] as [(String, String?, String?)])
    func dates(date: String, time: String?, expected: String?) {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        #expect(ImageMetadata.date(date, time: time).map { formatter.string(from: $0) } == expected)
    }
}
