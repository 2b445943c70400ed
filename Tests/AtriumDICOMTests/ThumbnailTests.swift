import AtriumTesting
import Foundation
import Testing

@testable import AtriumDICOM

@Suite("Thumbnails")
struct ThumbnailTests {
    private func image(rows: Int, columns: Int, values: [UInt16], photometric: String = "MONOCHROME2", window: (String, String)? = nil) throws -> DICOMFile {
        var writer = DICOMWriter()
        try writer.set(.sopClassUID, .UI, .text("1.2.840.10008.5.1.4.1.1.7"))
        try writer.set(.sopInstanceUID, .UI, .text("2.25.7"))
        try writer.set(.samplesPerPixel, .US, .uint16([1]))
        try writer.set(.photometricInterpretation, .CS, .text(photometric))
        try writer.set(.rows, .US, .uint16([UInt16(rows)]))
        try writer.set(.columns, .US, .uint16([UInt16(columns)]))
        try writer.set(.bitsAllocated, .US, .uint16([16]))
        try writer.set(.bitsStored, .US, .uint16([16]))
        try writer.set(.pixelRepresentation, .US, .uint16([0]))
        if let window {
            try writer.set(.windowCenter, .DS, .text(window.0))
            try writer.set(.windowWidth, .DS, .text(window.1))
        }
        try writer.set(.pixelData, .OW, .bytes(values.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }))
        return try DICOMReader.read(writer.partTen(implementationClassUID: "2.25.1"))
    }

    /// The grey levels of an 8-bit greyscale PNG this module wrote (filter 0 rows).
    private func greys(_ png: [UInt8]) throws -> (width: Int, height: Int, pixels: [UInt8]) {
        let width = Int(png[16]) << 24 | Int(png[17]) << 16 | Int(png[18]) << 8 | Int(png[19])
        let height = Int(png[20]) << 24 | Int(png[21]) << 16 | Int(png[22]) << 8 | Int(png[23])
        let idatLength = Int(png[33]) << 24 | Int(png[34]) << 16 | Int(png[35]) << 8 | Int(png[36])
        let compressed = Array(png[41..<(41 + idatLength)])
        let raw = try Inflate.zlib(compressed)
        var pixels: [UInt8] = []
        for row in 0..<height { pixels += raw[(row * (width + 1) + 1)..<((row + 1) * (width + 1))] }
        return (width, height, pixels)
    }

    @Test("box averages summed as integers equal the samples averaged as Doubles, on a full-size frame with uneven boxes")
    func boxAverage() throws {
        var generator = SystemRandomNumberGenerator()
        let (rows, columns) = (333, 500)
        let values = (0..<(rows * columns)).map { _ in UInt16.random(in: 0...UInt16.max, using: &generator) }
        let file = try image(rows: rows, columns: columns, values: values)
        let layout = try PixelLayout(file.dataset)
        let (width, height) = (128, 85)
        let bytes = values.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        let averaged = bytes.withUnsafeBytes { Thumbnail.boxAverage($0, UInt16.self, layout: layout, width: width, height: height) }
        var expected: [Double] = []
        for y in 0..<height {
            let y0 = y * rows / height, y1 = max(y0 + 1, (y + 1) * rows / height)
            for x in 0..<width {
                let x0 = x * columns / width, x1 = max(x0 + 1, (x + 1) * columns / width)
                var sum = 0.0
                for sy in y0..<y1 { for sx in x0..<x1 { sum += Double(values[sy * columns + sx]) } }
                expected.append(sum / Double((y1 - y0) * (x1 - x0)))
            }
        }
        #expect(averaged == expected)
    }

    @Test("the window maps centre ± width/2 onto 0…255, as PS3.3 C.11.2.1.2.1 defines it")
    func window() {
        #expect(Rendering.windowed(0, center: 150, width: 301) == 0)
        #expect(Rendering.windowed(150, center: 150, width: 301) == 128)
        #expect(Rendering.windowed(300, center: 150, width: 301) == 255)
        #expect(Rendering.windowed(1000, center: 40, width: 400) == 255)
        #expect(Rendering.windowed(-1000, center: 40, width: 400) == 0)
        #expect(Rendering.windowed(.nan, center: 40, width: 400) == 0)
        #expect(Rendering.windowed(5, center: .nan, width: 400) == 0)
        #expect(Rendering.windowed(5, center: 40, width: .infinity) == 0)
        #expect(Rendering.windowed(1e308, center: -1e308, width: 2) == 255)
    }

    @Test("a window or rescale of NaN or infinity in the file falls back instead of trapping")
    func hostileWindow() throws {
        let file = try image(rows: 1, columns: 2, values: [1000, 3000], window: ("NaN", "inf"))
        #expect(try greys(Thumbnail.png(of: file)).pixels == [0, 255])
    }

    @Test("a grey image is windowed by its own window, MONOCHROME1 is inverted, and min/max is the fallback")
    func greyLevels() throws {
        let windowed = try greys(Thumbnail.png(of: image(rows: 1, columns: 3, values: [0, 150, 300], window: ("150", "301"))))
        #expect(windowed.pixels == [0, 128, 255])
        let inverted = try greys(Thumbnail.png(of: image(rows: 1, columns: 3, values: [0, 150, 300], photometric: "MONOCHROME1", window: ("150", "301"))))
        #expect(inverted.pixels == [255, 127, 0])
        let stretched = try greys(Thumbnail.png(of: image(rows: 1, columns: 2, values: [1000, 3000])))
        #expect(stretched.pixels == [0, 255])
    }

    @Test("the longest edge becomes 128 pixels and the PNG is valid for an independent reader")
    func size() throws {
        let file = try image(rows: 300, columns: 512, values: (0..<(300 * 512)).map { UInt16($0 % 4096) })
        let png = try Thumbnail.png(of: file)
        let decoded = try greys(png)
        #expect(decoded.width == 128 && decoded.height == 75)
        let directory = try TemporaryDirectory(prefix: "atrium-png")
        let path = "\(directory.path)/t.png"
        try Data(png).write(to: URL(fileURLWithPath: path))
        let check = """
            import struct, sys, zlib
            b = open(sys.argv[1], 'rb').read(); assert b[:8] == b'\\x89PNG\\r\\n\\x1a\\n'; i = 8; kinds = []
            while i < len(b):
                n, = struct.unpack('>I', b[i:i+4]); t = b[i+4:i+8]; d = b[i+8:i+8+n]; crc, = struct.unpack('>I', b[i+8+n:i+12+n])
                assert zlib.crc32(t + d) & 0xffffffff == crc, t; kinds.append(t.decode()); i += 12 + n
                if t == b'IHDR': w, h, depth, colour = struct.unpack('>IIBB', d[:10])
                if t == b'IDAT': raw = zlib.decompress(d)
            assert len(raw) == h * (w + 1) and all(raw[r * (w + 1)] == 0 for r in range(h))
            print(w, h, depth, colour, ','.join(kinds))
            """
        let output = try Python.run(["-c", check, path]).output
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == "128 75 8 0 IHDR,IDAT,IEND", "\(output)")
    }
}
