/// Why a film sheet cannot be laid out or composed. Errors are equal when their codes are; ``description`` says
/// what was wrong in words a print requester can act on.
public struct FilmError: Error, Sendable, CustomStringConvertible {
    private enum Code: Sendable {
        case displayFormat
        case filmSize
        case orientation
        case magnification
        case resolution
        case tooLarge
        case tooManyImages
        case windowCount
        case window
        case image
    }

    private let code: Code
    /// What was wrong, naming the offending value.
    public let detail: String
    /// The file where the error was raised.
    public let file: String
    /// The line where the error was raised.
    public let line: Int

    private init(_ code: Code, _ detail: String, file: String, line: Int) {
        self.code = code
        self.detail = detail
        self.file = file
        self.line = line
    }

    /// An Image Display Format other than `STANDARD\C,R`, or one whose C or R is not 1 to 10.
    public static func displayFormat(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.displayFormat, detail, file: file, line: line) }
    /// A Film Size ID that is not one of PS3.3 C.13.5.1's defined terms.
    public static func filmSize(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.filmSize, detail, file: file, line: line) }
    /// A Film Orientation other than PORTRAIT or LANDSCAPE.
    public static func orientation(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.orientation, detail, file: file, line: line) }
    /// A Magnification Type other than REPLICATE, BILINEAR, CUBIC or NONE.
    public static func magnification(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.magnification, detail, file: file, line: line) }
    /// A resolution outside ``FilmSheet/dpiRange``.
    public static func resolution(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.resolution, detail, file: file, line: line) }
    /// A sheet or image box of no pixels, or of more than ``FilmSheet/maximumPixels``.
    public static func tooLarge(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.tooLarge, detail, file: file, line: line) }
    /// More images than the layout has cells.
    public static func tooManyImages(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.tooManyImages, detail, file: file, line: line) }
    /// Not one window (or `nil`) per image.
    public static func windowCount(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.windowCount, detail, file: file, line: line) }
    /// A window whose centre is not finite or whose width is not a finite number of at least 1.
    public static func window(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.window, detail, file: file, line: line) }
    /// An image whose pixels cannot be rendered (the ``PixelError`` is in the detail).
    public static func image(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.image, detail, file: file, line: line) }

    /// The same error, its detail prefixed with the 1-based image number it concerns.
    func concerning(image index: Int) -> Self { Self(code, "image \(index + 1): \(detail)", file: file, line: line) }

    /// The ``detail``: what was wrong, naming the offending value.
    public var description: String { detail }
}

extension FilmError: Equatable {
    /// Errors are equal when their codes are.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
}

/// Film Size ID (2010,0050): the defined terms of PS3.3 C.13.5.1.
public enum FilmSize: String, Sendable, CaseIterable {
    /// 8 × 10 inches (`8INX10IN`).
    case inch8x10 = "8INX10IN"
    /// 8.5 × 11 inches (`8_5INX11IN`).
    case inch8_5x11 = "8_5INX11IN"
    /// 10 × 12 inches (`10INX12IN`).
    case inch10x12 = "10INX12IN"
    /// 10 × 14 inches (`10INX14IN`).
    case inch10x14 = "10INX14IN"
    /// 11 × 14 inches (`11INX14IN`).
    case inch11x14 = "11INX14IN"
    /// 11 × 17 inches (`11INX17IN`).
    case inch11x17 = "11INX17IN"
    /// 14 × 14 inches (`14INX14IN`).
    case inch14x14 = "14INX14IN"
    /// 14 × 17 inches (`14INX17IN`), the size used when none is named.
    case inch14x17 = "14INX17IN"
    /// 24 × 24 cm (`24CMX24CM`).
    case cm24x24 = "24CMX24CM"
    /// 24 × 30 cm (`24CMX30CM`).
    case cm24x30 = "24CMX30CM"
    /// ISO A4, 210 × 297 mm (`A4`).
    case a4 = "A4"
    /// ISO A3, 297 × 420 mm (`A3`).
    case a3 = "A3"

    /// The size named by a Film Size ID (padding ignored, any case); empty means 14INX17IN.
    public init(filmSizeID: String) throws(FilmError) {
        self = try FilmLayout.definedTerm(filmSizeID, named: "film size ID", empty: .inch14x17) { .filmSize($0) }
    }

    /// The shorter and the longer side, in inches (A4 is 210 × 297 mm, A3 297 × 420 mm).
    public var inches: (short: Double, long: Double) {
        switch self {
        case .inch8x10: (8, 10)
        case .inch8_5x11: (8.5, 11)
        case .inch10x12: (10, 12)
        case .inch10x14: (10, 14)
        case .inch11x14: (11, 14)
        case .inch11x17: (11, 17)
        case .inch14x14: (14, 14)
        case .inch14x17: (14, 17)
        case .cm24x24: (240 / 25.4, 240 / 25.4)
        case .cm24x30: (240 / 25.4, 300 / 25.4)
        case .a4: (210 / 25.4, 297 / 25.4)
        case .a3: (297 / 25.4, 420 / 25.4)
        }
    }
}

/// Magnification Type (2010,0060): how an image is interpolated to fill its cell.
public enum MagnificationType: String, Sendable, CaseIterable {
    /// Nearest neighbour: each source pixel becomes a block.
    case replicate = "REPLICATE"
    /// Bilinear interpolation (a triangle filter, widened when shrinking).
    case bilinear = "BILINEAR"
    /// Bicubic interpolation (Keys, a = -0.5, i.e. Catmull-Rom; widened when shrinking).
    case cubic = "CUBIC"
    /// No scaling: the image at one film pixel per image pixel, centred and cropped to its cell.
    case unscaled = "NONE"

    /// The type named by a Magnification Type value (padding ignored, any case); empty means BILINEAR.
    public init(magnificationType: String) throws(FilmError) {
        self = try FilmLayout.definedTerm(magnificationType, named: "magnification type", empty: .bilinear) { .magnification($0) }
    }
}

/// The layout of one Basic Film Box (PS3.3 C.13.3, C.13.5): a grid of equal cells on a film of a given size.
public struct FilmLayout: Sendable, Equatable {
    /// Image boxes across (the C of `STANDARD\C,R`).
    public let columns: Int
    /// Image boxes down (the R of `STANDARD\C,R`).
    public let rows: Int
    /// The film's physical size.
    public let filmSize: FilmSize
    /// LANDSCAPE: the longer side is the width. PORTRAIT (the default): the shorter side is.
    public let landscape: Bool
    /// How each image is scaled into its cell.
    public let magnification: MagnificationType

    /// The accepted number of columns, and of rows.
    public static let cellsPerSide = 1...10

    /// A grid of `columns` × `rows` cells, each from 1 to 10.
    public init(columns: Int, rows: Int, filmSize: FilmSize = .inch14x17, landscape: Bool = false, magnification: MagnificationType = .bilinear) throws(FilmError) {
        guard Self.cellsPerSide.contains(columns), Self.cellsPerSide.contains(rows) else {
            throw .displayFormat("a film of \(columns) × \(rows) image boxes: columns and rows must each be 1 to 10")
        }
        self.columns = columns
        self.rows = rows
        self.filmSize = filmSize
        self.landscape = landscape
        self.magnification = magnification
    }

    /// The layout that a Basic Film Box's attributes describe. Only `STANDARD\C,R` Image Display Formats are
    /// supported; an empty Film Size ID means 14INX17IN, an empty orientation PORTRAIT, an empty magnification
    /// type BILINEAR.
    public init(imageDisplayFormat: String, filmSizeID: String = "", orientation: String = "", magnificationType: String = "") throws(FilmError) {
        let (columns, rows) = try Self.grid(imageDisplayFormat)
        let turn = try Self.definedTerm(orientation, named: "film orientation", empty: Orientation.portrait) { .orientation($0) }
        try self.init(
            columns: columns,
            rows: rows,
            filmSize: FilmSize(filmSizeID: filmSizeID),
            landscape: turn == .landscape,
            magnification: MagnificationType(magnificationType: magnificationType)
        )
    }

    /// How many images the film holds.
    public var capacity: Int { columns * rows }

    /// C and R of `STANDARD\C,R`: each one to three ASCII digits, from 1 to 10.
    private static func grid(_ format: String) throws(FilmError) -> (columns: Int, rows: Int) {
        let parts = term(format).split(separator: "\\", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0] == "STANDARD" else {
            throw .displayFormat("unsupported image display format \"\(quoted(format))\": only STANDARD\\C,R is supported")
        }
        let numbers = parts[1].split(separator: ",", omittingEmptySubsequences: false)
        func number(_ text: Substring) -> Int? {
            guard (1...3).contains(text.utf8.count), text.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
            return Int(text)
        }
        guard numbers.count == 2, let columns = number(numbers[0]), let rows = number(numbers[1]),
            cellsPerSide.contains(columns), cellsPerSide.contains(rows)
        else {
            throw .displayFormat("image display format \"\(quoted(format))\" is not STANDARD\\C,R with C columns and R rows each from 1 to 10")
        }
        return (columns, rows)
    }

    /// Film Orientation (2010,0040).
    private enum Orientation: String, CaseIterable {
        case portrait = "PORTRAIT"
        case landscape = "LANDSCAPE"
    }

    /// The defined term that `value` names, padding ignored and in any case; `empty` when it is empty. Anything
    /// else is refused with `error`, quoting the value and listing the terms.
    static func definedTerm<Term: RawRepresentable & CaseIterable>(
        _ value: String,
        named name: String,
        empty: Term,
        error: (String) -> FilmError
    ) throws(FilmError) -> Term where Term.RawValue == String {
        let text = term(value)
        if text.isEmpty { return empty }
        if let found = Term(rawValue: text) { return found }
        throw error("unsupported \(name) \"\(quoted(value))\": use one of \(Term.allCases.map(\.rawValue).joined(separator: ", "))")
    }

    /// A code string without its padding, in upper case.
    private static func term(_ value: String) -> String {
        var text = Substring(value)
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " || text.last == "\0" { text = text.dropLast() }
        return text.uppercased()
    }

    /// A value cut short for an error message.
    private static func quoted(_ value: String) -> String {
        value.count > 40 ? String(value.prefix(40)) + "…" : value
    }
}

/// A window to print an image with (PS3.3 C.11.2.1.2.1), overriding the image's own.
public struct FilmWindow: Sendable, Equatable {
    /// Window Center, in rescaled values.
    public var center: Double
    /// Window Width, at least 1.
    public var width: Double

    /// A window of `width` values centred on `center`.
    public init(center: Double, width: Double) {
        self.center = center
        self.width = width
    }
}

/// One cell of a film sheet, in sheet pixels from the top-left corner.
public struct FilmCell: Sendable, Equatable {
    /// The left edge.
    public let x: Int
    /// The top edge.
    public let y: Int
    /// Width in pixels.
    public let width: Int
    /// Height in pixels.
    public let height: Int
}

/// An 8-bit picture: grey (1 channel) or RGB (3 channels, interleaved), rows from the top.
public struct RenderedImage: Sendable, Equatable {
    /// Width in pixels.
    public let width: Int
    /// Height in pixels.
    public let height: Int
    /// 1 (grey) or 3 (RGB).
    public let channels: Int
    /// `width × height × channels` levels, row-major.
    public let pixels: [UInt8]

    /// The picture as a PNG.
    public func png() -> [UInt8] {
        Rendering.encodePNG(pixels, width: width, height: height, channels: channels)
    }
}

/// Film sheets composed as a DICOM printer would expose them: the film's size at a resolution, divided into
/// `columns × rows` cells, each image scaled into its cell.
///
/// Cell geometry: on a sheet of W × H pixels, the cell in column c and row r (from 0, top-left first) spans x from
/// `c·W/C` to `(c+1)·W/C` and y from `r·H/R` to `(r+1)·H/R` (integer division, end excluded). The cells tile the
/// sheet exactly, with no gap or margin; cells of one row or column differ in size by one pixel at most. Images
/// are drawn in row-major order, each centred in its cell on black.
public enum FilmSheet {
    /// The accepted resolutions, in dots per inch.
    public static let dpiRange = 25...600
    /// The largest sheet, and the largest image box, in pixels (14INX17IN up to 450 dpi, A3 up to 500 dpi).
    public static let maximumPixels = 50_000_000

    /// The sheet's size in pixels: the film's size in inches × `dpi`, rounded; the shorter side across unless landscape.
    public static func pixelSize(of layout: FilmLayout, dpi: Int) throws(FilmError) -> (width: Int, height: Int) {
        guard dpiRange.contains(dpi) else { throw .resolution("a resolution of \(dpi) dpi: use 25 to 600") }
        let (short, long) = layout.filmSize.inches
        let sides = (Int((short * Double(dpi)).rounded()), Int((long * Double(dpi)).rounded()))
        let size = layout.landscape ? (width: sides.1, height: sides.0) : (width: sides.0, height: sides.1)
        guard size.width * size.height <= maximumPixels else {
            throw .tooLarge("a \(layout.filmSize.rawValue) sheet at \(dpi) dpi is \(size.width) × \(size.height) pixels, over the limit of \(maximumPixels)")
        }
        return size
    }

    /// The cells of the sheet, row-major from the top-left (see ``FilmSheet`` for the rule).
    public static func cells(of layout: FilmLayout, dpi: Int) throws(FilmError) -> [FilmCell] {
        let (width, height) = try pixelSize(of: layout, dpi: dpi)
        var cells: [FilmCell] = []
        cells.reserveCapacity(layout.capacity)
        for row in 0..<layout.rows {
            let y = row * height / layout.rows, bottom = (row + 1) * height / layout.rows
            for column in 0..<layout.columns {
                let x = column * width / layout.columns, right = (column + 1) * width / layout.columns
                cells.append(FilmCell(x: x, y: y, width: right - x, height: bottom - y))
            }
        }
        return cells
    }

    /// One image rendered on its own into a `width × height` box: its first frame; grey images windowed by
    /// `window`, else by the object's own Window Center/Width after its rescale, else from its minimum to its
    /// maximum, and MONOCHROME1 inverted; RGB kept (`window` does not apply). The image is scaled with
    /// `magnification` to fit the box, keeping its aspect ratio (non-square pixels, from Pixel Spacing or else
    /// Pixel Aspect Ratio, are honoured), and centred on black; ``MagnificationType/unscaled`` centres it at 1:1,
    /// cropped to the box.
    public static func render(_ file: DICOMFile, window: FilmWindow?, width: Int, height: Int, magnification: MagnificationType) throws(FilmError) -> RenderedImage {
        guard width >= 1, height >= 1, width <= maximumPixels / height else {
            throw .tooLarge("an image box of \(width) × \(height) pixels: each side must be at least 1 and the area at most \(maximumPixels)")
        }
        if let window, !(window.center.isFinite && window.width.isFinite && window.width >= 1) {
            throw .window("a window of centre \(window.center) and width \(window.width): the width must be at least 1, and both finite")
        }
        let layout: PixelLayout, values: [Double]
        do throws(PixelError) {
            (layout, values) = try Rendering.firstFrame(of: file, for: "film")
        } catch {
            throw .image("cannot be printed: \(error.description)")
        }
        let levels =
            layout.samplesPerPixel == 3
            ? Rendering.rgbLevels(values, bitsStored: layout.bitsStored)
            : Rendering.greyLevels(values, dataset: file.dataset, photometric: layout.photometricInterpretation, window: window.map { ($0.center, $0.width) })
        let source = RenderedImage(width: layout.columns, height: layout.rows, channels: layout.samplesPerPixel, pixels: levels)
        let size: (width: Int, height: Int)
        if magnification == .unscaled {
            size = (source.width, source.height)
        } else {
            // The image's height in units of its pixel width, so that the fit keeps its physical shape.
            let tall = Double(source.height) * pixelAspectRatio(file.dataset)
            let scale = min(Double(width) / Double(source.width), Double(height) / tall)
            size = (min(width, max(1, Int((Double(source.width) * scale).rounded()))), min(height, max(1, Int((tall * scale).rounded()))))
        }
        let scaled = Resampler.resample(source, width: size.width, height: size.height, magnification: magnification)
        return centred(scaled, width: width, height: height)
    }

    /// The whole sheet: each image rendered into its cell in row-major order (`windows[i]` for `images[i]`);
    /// cells without an image stay black. The sheet is grey unless an image is RGB, when grey images are
    /// repeated in all three channels.
    public static func compose(layout: FilmLayout, images: [DICOMFile], windows: [FilmWindow?], dpi: Int) throws(FilmError) -> RenderedImage {
        guard images.count <= layout.capacity else {
            throw .tooManyImages("\(images.count) images for a \(layout.columns) × \(layout.rows) film of \(layout.capacity) image boxes")
        }
        guard windows.count == images.count else {
            throw .windowCount("\(windows.count) windows for \(images.count) images: give one window (or nil) per image")
        }
        let (width, height) = try pixelSize(of: layout, dpi: dpi)
        let grid = try cells(of: layout, dpi: dpi)
        var rendered: [RenderedImage] = []
        for (index, image) in images.enumerated() {
            do throws(FilmError) {
                let cell = grid[index]
                rendered.append(try render(image, window: windows[index], width: cell.width, height: cell.height, magnification: layout.magnification))
            } catch {
                throw error.concerning(image: index)
            }
        }
        let channels = rendered.contains { $0.channels == 3 } ? 3 : 1
        var sheet = [UInt8](repeating: 0, count: width * height * channels)
        sheet.withUnsafeMutableBufferPointer { target in
            for (cell, image) in zip(grid, rendered) {
                image.pixels.withUnsafeBufferPointer { source in
                    for y in 0..<image.height {
                        let from = y * image.width * image.channels
                        let to = ((cell.y + y) * width + cell.x) * channels
                        if image.channels == channels {
                            for i in 0..<(image.width * channels) { target[to + i] = source[from + i] }
                        } else {
                            for x in 0..<image.width {
                                let level = source[from + x]
                                target[to + 3 * x] = level
                                target[to + 3 * x + 1] = level
                                target[to + 3 * x + 2] = level
                            }
                        }
                    }
                }
            }
        }
        return RenderedImage(width: width, height: height, channels: channels, pixels: sheet)
    }

    /// The whole sheet of ``compose(layout:images:windows:dpi:)`` as an 8-bit PNG.
    public static func png(layout: FilmLayout, images: [DICOMFile], windows: [FilmWindow?], dpi: Int) throws(FilmError) -> [UInt8] {
        try compose(layout: layout, images: images, windows: windows, dpi: dpi).png()
    }

    /// A pixel's height over its width: Pixel Spacing (row spacing \ column spacing), else Pixel Aspect Ratio
    /// (vertical \ horizontal), else 1. Nonsense (not positive, or beyond 1:16) counts as 1.
    static func pixelAspectRatio(_ dataset: DataSet) -> Double {
        let ratio: Double
        let spacing = dataset.doubles(.pixelSpacing), aspect = dataset.doubles(.pixelAspectRatio)
        if spacing.count >= 2, spacing[0] > 0, spacing[1] > 0 {
            ratio = spacing[0] / spacing[1]
        } else if aspect.count >= 2, aspect[0] > 0, aspect[1] > 0 {
            ratio = aspect[0] / aspect[1]
        } else {
            return 1
        }
        return ratio.isFinite && (1.0 / 16...16).contains(ratio) ? ratio : 1
    }

    /// `image` centred in a black `width × height` box, cropped where it is larger.
    static func centred(_ image: RenderedImage, width: Int, height: Int) -> RenderedImage {
        guard image.width != width || image.height != height else { return image }
        let channels = image.channels
        // Division truncates toward zero: an odd pixel of black border, or of crop, goes to the right and bottom.
        let left = (width - image.width) / 2, top = (height - image.height) / 2
        let xs = max(0, left)..<min(width, left + image.width), ys = max(0, top)..<min(height, top + image.height)
        var box = [UInt8](repeating: 0, count: width * height * channels)
        box.withUnsafeMutableBufferPointer { target in
            image.pixels.withUnsafeBufferPointer { source in
                for y in ys {
                    let from = ((y - top) * image.width + (xs.lowerBound - left)) * channels
                    let to = (y * width + xs.lowerBound) * channels
                    for i in 0..<(xs.count * channels) { target[to + i] = source[from + i] }
                }
            }
        }
        return RenderedImage(width: width, height: height, channels: channels, pixels: box)
    }
}

/// Separable resampling of 8-bit pictures: nearest neighbour, or a filter (triangle or Keys cubic) whose support
/// widens by the reduction factor when shrinking, so that a large image printed small is averaged, not aliased.
/// Sample centres are aligned (output pixel i covers source coordinates i·s to (i+1)·s); at the edges the
/// filter is cut off and its weights renormalised.
enum Resampler {
    /// For each output index along one axis: the first source index and the weights from there.
    struct Axis {
        var starts: [Int]
        var counts: [Int]
        /// `stride` weights per output index, the first `counts[i]` of them used.
        var weights: [Float]
        var stride: Int
    }

    /// `image` scaled to `width × height`.
    static func resample(_ image: RenderedImage, width: Int, height: Int, magnification: MagnificationType) -> RenderedImage {
        guard image.width != width || image.height != height else { return image }
        let channels = image.channels
        let across = axis(source: image.width, output: width, magnification: magnification)
        let down = axis(source: image.height, output: height, magnification: magnification)
        // Horizontal pass: every source row to `width` samples.
        var wide = [Float](repeating: 0, count: image.height * width * channels)
        image.pixels.withUnsafeBufferPointer { source in
            wide.withUnsafeMutableBufferPointer { target in
                across.weights.withUnsafeBufferPointer { weights in
                    for y in 0..<image.height {
                        let row = y * image.width * channels
                        for x in 0..<width {
                            let start = row + across.starts[x] * channels, base = x * across.stride
                            for channel in 0..<channels {
                                var sum: Float = 0
                                for k in 0..<across.counts[x] { sum += weights[base + k] * Float(source[start + k * channels + channel]) }
                                target[(y * width + x) * channels + channel] = sum
                            }
                        }
                    }
                }
            }
        }
        // Vertical pass: each output row is a weighted sum of rows of the horizontal pass.
        let rowLength = width * channels
        var pixels = [UInt8](repeating: 0, count: height * rowLength)
        var sums = [Float](repeating: 0, count: rowLength)
        wide.withUnsafeBufferPointer { source in
            pixels.withUnsafeMutableBufferPointer { target in
                sums.withUnsafeMutableBufferPointer { sums in
                    for y in 0..<height {
                        for i in 0..<rowLength { sums[i] = 0 }
                        for k in 0..<down.counts[y] {
                            let weight = down.weights[y * down.stride + k], row = (down.starts[y] + k) * rowLength
                            for i in 0..<rowLength { sums[i] += weight * source[row + i] }
                        }
                        for i in 0..<rowLength { target[y * rowLength + i] = UInt8(min(255, max(0, sums[i])) + 0.5) }
                    }
                }
            }
        }
        return RenderedImage(width: width, height: height, channels: channels, pixels: pixels)
    }

    /// The taps that take `source` samples to `output` samples.
    static func axis(source: Int, output: Int, magnification: MagnificationType) -> Axis {
        switch magnification {
        case .replicate, .unscaled:
            // The source pixel under each output pixel's centre: integer arithmetic, so an integer zoom is exact.
            let starts = (0..<output).map { min(source - 1, (2 * $0 + 1) * source / (2 * output)) }
            return Axis(starts: starts, counts: Array(repeating: 1, count: output), weights: Array(repeating: 1, count: output), stride: 1)
        case .bilinear, .cubic:
            let support: Double = magnification == .cubic ? 2 : 1
            let scale = Double(source) / Double(output), stretch = max(1, scale)
            let radius = support * stretch
            let stride = Int((2 * radius).rounded(.up)) + 2
            var axis = Axis(starts: [], counts: [], weights: Array(repeating: 0, count: output * stride), stride: stride)
            axis.starts.reserveCapacity(output)
            axis.counts.reserveCapacity(output)
            for i in 0..<output {
                let center = (Double(i) + 0.5) * scale
                let low = max(0, Int((center - radius).rounded(.down))), high = min(source, Int((center + radius).rounded(.up)))
                var weights = (low..<high).map { kernel((Double($0) + 0.5 - center) / stretch, cubic: magnification == .cubic) }
                let total = weights.reduce(0, +)
                if total > 0 {
                    weights = weights.map { $0 / total }
                    axis.starts.append(low)
                } else {
                    weights = [1]
                    axis.starts.append(min(source - 1, Int(center)))
                }
                axis.counts.append(weights.count)
                for (k, weight) in weights.enumerated() { axis.weights[i * stride + k] = Float(weight) }
            }
            return axis
        }
    }

    /// The triangle filter, or the Keys cubic convolution kernel with a = -0.5.
    static func kernel(_ t: Double, cubic: Bool) -> Double {
        let x = abs(t)
        guard cubic else { return max(0, 1 - x) }
        let a = -0.5
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        return 0
    }
}
