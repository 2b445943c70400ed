import AtriumTesting
import Foundation
import Testing

@testable import AtriumDICOM

/// Reading only the start of an object too large to hold in memory, and writing one whose pixels stream.
@Suite("DICOM header-only reading and streamed pixel data")
struct HeaderTests {
    /// A 3-frame 64×48 16-bit object, with its pixel bytes.
    private func multiFrame() throws -> (bytes: [UInt8], pixels: [UInt8]) {
        var writer = DICOMWriter()
        try writer.set(.sopClassUID, .UI, .text("1.2.840.10008.5.1.4.1.1.7.3"))
        try writer.set(.sopInstanceUID, .UI, .text("2.25.77"))
        try writer.set(.modality, .CS, .text("CT"))
        try writer.set(.patientID, .LO, .text("P-7"))
        try writer.set(.samplesPerPixel, .US, .uint16([1]))
        try writer.set(.photometricInterpretation, .CS, .text("MONOCHROME2"))
        try writer.set(.numberOfFrames, .IS, .text("3"))
        try writer.set(.rows, .US, .uint16([48]))
        try writer.set(.columns, .US, .uint16([64]))
        try writer.set(.bitsAllocated, .US, .uint16([16]))
        try writer.set(.bitsStored, .US, .uint16([16]))
        try writer.set(.highBit, .US, .uint16([15]))
        try writer.set(.pixelRepresentation, .US, .uint16([0]))
        var generator = SplitMix64(seed: 3)
        let pixels = (0..<(64 * 48 * 3 * 2)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        try writer.set(.pixelData, .OW, .bytes(pixels))
        return (writer.partTen(implementationClassUID: "2.25.99"), pixels)
    }

    @Test("a prefix stops at the pixel data, which is described, not read; the first frame alone makes the same thumbnail")
    func elidedPixelData() throws {
        let (bytes, pixels) = try multiFrame()
        let whole = try DICOMReader.read(bytes)
        let prefix = Array(bytes.prefix(bytes.count - pixels.count + 100))
        let header = try DICOMReader.readHeader(prefix, totalLength: bytes.count)
        let elided = try #require(header.elided)
        #expect(elided.tag == .pixelData && elided.vr == .OW && elided.length == pixels.count)
        #expect(elided.valueOffset == bytes.count - pixels.count)
        #expect(header.file.dataset.string(.patientID) == "P-7" && header.file.dataset[.pixelData] == nil)
        let frame = Array(bytes[elided.valueOffset..<(elided.valueOffset + 64 * 48 * 2)])
        let first = header.withFirstFrame(frame)
        #expect(try Thumbnail.png(of: first) == Thumbnail.png(of: whole))
    }

    @Test("a prefix that is malformed before the elided value is still refused; one longer than the object is not elided")
    func prefixChecks() throws {
        let (bytes, pixels) = try multiFrame()
        let prefix = Array(bytes.prefix(bytes.count - pixels.count - 3))
        // The pixel data's own header is cut: that is truncation, not a value past the prefix.
        #expect(throws: DICOMError.self) { try DICOMReader.readHeader(prefix, totalLength: bytes.count) }
        // A value longer than the whole object is an error even in a prefix.
        let short = Array(bytes.prefix(bytes.count - 10))
        #expect(throws: DICOMError.self) { try DICOMReader.readHeader(short, totalLength: short.count) }
        #expect(throws: DICOMError.self) { try DICOMReader.readHeader(Array("not dicom".utf8), totalLength: 9) }
    }

    @Test("a Part 10 prefix followed by the pixel bytes (and a pad byte when odd) is a valid object")
    func streamedPixelData() throws {
        for count in [6, 7] {
            var writer = DICOMWriter()
            try writer.set(.sopClassUID, .UI, .text("1.2.840.10008.5.1.4.1.1.7"))
            try writer.set(.sopInstanceUID, .UI, .text("2.25.5"))
            try writer.set(.samplesPerPixel, .US, .uint16([1]))
            try writer.set(.photometricInterpretation, .CS, .text("MONOCHROME2"))
            try writer.set(.rows, .US, .uint16([1]))
            try writer.set(.columns, .US, .uint16([UInt16(count)]))
            try writer.set(.bitsAllocated, .US, .uint16([8]))
            try writer.set(.bitsStored, .US, .uint16([8]))
            try writer.set(.highBit, .US, .uint16([7]))
            try writer.set(.pixelRepresentation, .US, .uint16([0]))
            let pixels: [UInt8] = Array(1...UInt8(count))
            var bytes = try writer.partTenPrefix(implementationClassUID: "2.25.9", pixelDataVR: .OB, pixelDataLength: UInt32(count))
            bytes += pixels + (count % 2 == 1 ? [0] : [])
            let file = try DICOMReader.read(bytes)
            let (layout, decoded) = try PixelDecoder.decode(file)
            #expect(layout.columns == count && decoded == pixels)
        }
        #expect(throws: DICOMError.self) { try DICOMWriter().partTenPrefix(implementationClassUID: "2.25.9", pixelDataVR: .US, pixelDataLength: 2) }
    }
}
