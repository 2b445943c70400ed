
/// libFuzzer's entry point: every input goes through the reader, and what reads goes on to the metadata, the
/// pixel decoder and the thumbnail. The same input is also read the way the registry reads a large object:
/// a prefix (cut where the first byte says) as the header of an object of the input's length, then the first
/// frame of elided native pixel data to a thumbnail. Any crash, hang or sanitizer report is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: count))
    if let file = try? DICOMReader.read(bytes) {
        _ = ImageMetadata(file)
        _ = try? PixelDecoder.decode(file)
        _ = try? Thumbnail.png(of: file)
    }
    guard let first = bytes.first else { return 0 }
    let cut = 132 + (count - min(count, 132)) * Int(first) / 256
    if let header = try? DICOMReader.readHeader(Array(bytes.prefix(cut)), totalLength: count) {
        _ = ImageMetadata(header.file)
        if let elided = header.elided, elided.tag == .pixelData, let length = elided.length, !header.file.transferSyntax.encapsulated,
            let layout = try? PixelLayout(header.file.dataset), layout.bytesPerFrame <= length, elided.valueOffset + layout.bytesPerFrame <= count
        {
            let frame = Array(bytes[elided.valueOffset..<(elided.valueOffset + layout.bytesPerFrame)])
            _ = try? Thumbnail.png(of: header.withFirstFrame(frame))
        }
    }
    return 0
}
