import ArgumentParser
import AtriumDICOM
import AtriumImaging
import Foundation

/// `atrium bench imaging`: the imaging engine's filters and MIP, single-threaded, on the same slices and with the same
/// figures as bench/scipy_baseline.py, so that bench/run_bench.py can print the two side by side.
struct ImagingBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imaging",
        abstract: "Time AtriumImaging's filters and MIP on CT slices, single-threaded (next to scipy.ndimage).",
        discussion: """
            Loads the first 200 *.dcm files of --dir (sorted by name), decodes each to 16-bit samples, and times
            every filter on slice 100 (512×512) and per slice over the whole stack, then the maximum intensity
            projection along axis 0 of the stack as a Float32 volume. Like bench/scipy_baseline.py, each filter's
            timed region starts from the uint16 samples, so the integer-to-Float32 conversion is included; each figure
            is the median of --reps-2d (one slice) or --reps-3d (stack) runs after one warm-up run. Prints one JSON
            object per figure with the scipy script's keys: op, shape, median_ms, min_ms, max_ms, MPix_s.
            `lines` applies four 3×3 masks (the scipy figure applies one); its label says so.
            """
    )

    @Option(help: "A directory of at least 200 single-frame 16-bit DICOM slices of one size (bench/gen_ct_dicom.py).")
    var dir: String

    @Option(name: .customLong("reps-2d"), help: "Timed runs per figure on one slice.")
    var reps2D = 15

    @Option(name: .customLong("reps-3d"), help: "Timed runs per figure on the stack.")
    var reps3D = 5

    static let sliceCount = 200
    static let sliceIndex = 100

    func validate() throws {
        guard reps2D >= 1, reps3D >= 1 else { throw ValidationError("--reps-2d and --reps-3d must be at least 1") }
    }

    func run() throws {
        let stack = try Self.load(dir: dir, count: Self.sliceCount)
        let rows = stack.rows, columns = stack.columns
        let plane = rows * columns
        let image = stack.samples[Self.sliceIndex]
        let shape2D = "\(rows)x\(columns)"
        let shape3D = "\(Self.sliceCount)x\(rows)x\(columns)"
        var checksum: Double = 0

        // One filter: uint16 samples in, a Float32 image out (conversion included, as scipy's astype is).
        typealias Filter = (Image2D) throws -> Image2D
        let filters: [(String, Filter)] = [
            // Not a filter: the uint16 → Float32 conversion alone, which every figure below includes.
            ("convert uint16->Float32 only (Image2D init)", { $0 }),
            ("gaussian sigma=1.5", { try $0.smooth(sigma: 1.5) }),
            ("sobel magnitude", { $0.derivative() }),
            ("laplace", { $0.laplacian() }),
            ("lines: 4 masks, max |response|", { $0.lines() }),
            ("DoG bandpass s1-s3", { try $0.bandpass(sigmaLow: 1, sigmaHigh: 3) }),
        ]
        for (name, filter) in filters {
            let single = try Self.time(reps: reps2D) { () throws -> Double in
                let output = try filter(Image2D(rows: rows, columns: columns, samples: image, slope: 1, intercept: 0))
                return Double(output.pixels[plane / 2 + columns / 2])
            }
            checksum += single.sink
            Self.report(name, shape2D, single, pixels: plane)

            // Per slice into one output stack, as scipy's per_slice does (`out[k] = fn(s[k])` into a fresh np.empty).
            let perSlice = try Self.time(reps: reps3D) { () throws -> Double in
                var sink: Double = 0
                let total = Self.sliceCount * plane
                let out = try [Float](unsafeUninitializedCapacity: total) { buffer, initialized in
                    for (k, samples) in stack.samples.enumerated() {
                        let output = try filter(Image2D(rows: rows, columns: columns, samples: samples, slope: 1, intercept: 0))
                        output.pixels.withUnsafeBufferPointer { pixels in
                            _ = UnsafeMutableBufferPointer(rebasing: buffer[k * plane ..< (k + 1) * plane]).initialize(from: pixels)
                        }
                    }
                    initialized = total
                }
                for k in stride(from: 0, to: total, by: plane + columns + 1) { sink += Double(out[k]) }
                return sink
            }
            checksum += perSlice.sink
            Self.report(name + " (per-slice)", shape3D, perSlice, pixels: Self.sliceCount * plane)
        }

        // MIP along the slice axis of the stack held as a Float32 volume (numpy's is over the uint16 stack in memory).
        var contiguous: [UInt16] = []
        contiguous.reserveCapacity(Self.sliceCount * plane)
        for samples in stack.samples { contiguous.append(contentsOf: samples) }
        let volume = try Volume(slices: Self.sliceCount, rows: rows, columns: columns, samples: contiguous, slope: 1, intercept: 0)
        let mip = try Self.time(reps: reps3D) { () throws -> Double in
            Double(try volume.mip(axis: 0).pixels[plane / 2 + columns / 2])
        }
        checksum += mip.sink
        Self.report("MIP mip(axis: 0) Float32 volume", "\(shape3D) -> \(shape2D)", mip, pixels: Self.sliceCount * plane)

        // The same MIP with the uint16 → Float32 volume conversion inside the timed region.
        let mipFromSamples = try Self.time(reps: reps3D) { () throws -> Double in
            let converted = try Volume(slices: Self.sliceCount, rows: rows, columns: columns, samples: contiguous, slope: 1, intercept: 0)
            return Double(try converted.mip(axis: 0).pixels[plane / 2 + columns / 2])
        }
        checksum += mipFromSamples.sink
        Self.report("MIP mip(axis: 0) incl. uint16->Float32 volume", "\(shape3D) -> \(shape2D)", mipFromSamples, pixels: Self.sliceCount * plane)

        // The MIP on the stored uint16 samples themselves (StoredProjection): the same result as the Float32 volume's,
        // bit for bit, from half the memory. First over the contiguous stack, as numpy holds it, then over separate
        // slice arrays, as the processing service receives them.
        let mipStack = try Self.time(reps: reps3D) { () throws -> Double in
            Double(try StoredProjection.mip(stack: contiguous, slices: Self.sliceCount, rows: rows, columns: columns).pixels[plane / 2 + columns / 2])
        }
        checksum += mipStack.sink
        Self.report("MIP StoredProjection.mip uint16 stack", "\(shape3D) -> \(shape2D)", mipStack, pixels: Self.sliceCount * plane)
        let mipStored = try Self.time(reps: reps3D) { () throws -> Double in
            Double(try StoredProjection.mip(stack.samples, rows: rows, columns: columns).pixels[plane / 2 + columns / 2])
        }
        checksum += mipStored.sink
        Self.report("MIP StoredProjection.mip uint16 slices", "\(shape3D) -> \(shape2D)", mipStored, pixels: Self.sliceCount * plane)

        print("checksum \(checksum)")
    }

    /// The first `count` *.dcm files of `dir` by name, decoded to one [UInt16] per slice (16-bit samples reinterpreted
    /// as unsigned, as scipy_baseline.py's `.astype(np.uint16)` does).
    static func load(dir: String, count: Int) throws -> (rows: Int, columns: Int, samples: [[UInt16]]) {
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".dcm") }.sorted()
        guard names.count >= count else {
            throw ValidationError("\(dir) holds \(names.count) .dcm files; the imaging bench needs \(count) (bench/gen_ct_dicom.py)")
        }
        var rows = 0, columns = 0
        var slices: [[UInt16]] = []
        slices.reserveCapacity(count)
        for name in names.prefix(count) {
            let path = "\(dir)/\(name)"
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            let (layout, bytes) = try PixelDecoder.decode(DICOMReader.read([UInt8](data)))
            guard layout.samplesPerPixel == 1, layout.bitsAllocated == 16, layout.frames == 1 else {
                throw ValidationError("\(path): the imaging bench needs single-frame 16-bit grey slices")
            }
            if slices.isEmpty {
                rows = layout.rows
                columns = layout.columns
            }
            guard layout.rows == rows, layout.columns == columns else {
                throw ValidationError("\(path): \(layout.rows)x\(layout.columns), not \(rows)x\(columns) like the first slice")
            }
            let samples = [UInt16](unsafeUninitializedCapacity: rows * columns) { buffer, initialized in
                bytes.withUnsafeBytes { raw in
                    for i in 0..<(rows * columns) {
                        buffer[i] = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                    }
                }
                initialized = rows * columns
            }
            slices.append(samples)
        }
        return (rows, columns, slices)
    }

    /// One warm-up run, then `reps` timed runs: median, minimum and maximum in seconds, and the runs' folded results.
    static func time(reps: Int, _ body: () throws -> Double) throws -> (median: Double, min: Double, max: Double, sink: Double) {
        let clock = ContinuousClock()
        var sink = try body()
        var seconds: [Double] = []
        for _ in 0..<reps {
            var value: Double = 0
            let elapsed = try clock.measure { value = try body() }
            sink += value
            seconds.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
        }
        seconds.sort()
        let n = seconds.count
        let median = n % 2 == 1 ? seconds[n / 2] : (seconds[n / 2 - 1] + seconds[n / 2]) / 2
        return (median, seconds[0], seconds[n - 1], sink)
    }

    /// One JSON line with scipy_baseline.py's keys and rounding.
    static func report(_ op: String, _ shape: String, _ t: (median: Double, min: Double, max: Double, sink: Double), pixels: Int) {
        func ms(_ s: Double) -> String { String(format: "%.3f", s * 1e3) }
        let mpix = String(format: "%.1f", Double(pixels) / t.median / 1e6)
        print("{\"op\": \"\(op)\", \"shape\": \"\(shape)\", \"median_ms\": \(ms(t.median)), \"min_ms\": \(ms(t.min)), "
              + "\"max_ms\": \(ms(t.max)), \"MPix_s\": \(mpix)}")
    }
}
