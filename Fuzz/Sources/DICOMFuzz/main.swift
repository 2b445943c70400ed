
/// libFuzzer's entry point: every input goes through the reader, and what reads goes on to the metadata, the
/// pixel decoder and the thumbnail. Any crash, hang or sanitizer report is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: data, count: count))
    guard let file = try? DICOMReader.read(bytes) else { return 0 }
    _ = ImageMetadata(file)
    _ = try? PixelDecoder.decode(file)
    _ = try? Thumbnail.png(of: file)
    return 0
}
