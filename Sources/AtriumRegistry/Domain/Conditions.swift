import AtriumAPI
import AtriumDICOM
import Foundation
import SwiftProtobuf
import AtriumRuntime

/// Acquisition conditions: read from a data set at ingest, merged with what the registrant states, checked.
///
/// The typed message follows the modality (MR; CT; CR, DX, XA, RF, MG as X-ray; US; PT and NM). Every
/// other top-level attribute of group 0018 that holds text or numbers goes into `extra` as `gggg,eeee` →
/// value (multiple values joined with `\`). Sequences and binary values are not copied.
enum Conditions {
    static let maximumExtraEntries = 512
    static let maximumKeyBytes = 64
    static let maximumValueBytes = 1024

    /// The conditions recorded in `dataset`, for an image of `modality`.
    static func read(_ dataset: DataSet, modality: String?) -> Atrium_V1_AcquisitionConditions {
        var conditions = Atrium_V1_AcquisitionConditions()
        var typed: Set<DICOMTag> = []
        func number(_ element: UInt16, scale: Double = 1) -> Double {
            let tag = DICOMTag(0x0018, element)
            guard let value = dataset.double(tag), value.isFinite else { return 0 }
            typed.insert(tag)
            return value * scale
        }
        func text(_ element: UInt16) -> String {
            let tag = DICOMTag(0x0018, element)
            guard let value = dataset.string(tag) else { return "" }
            typed.insert(tag)
            return value
        }
        switch modality?.uppercased() {
        case "MR":
            conditions.mr = .with {
                $0.repetitionTimeMs = number(0x0080)
                $0.echoTimeMs = number(0x0081)
                $0.inversionTimeMs = number(0x0082)
                $0.flipAngleDeg = number(0x1314)
                $0.fieldStrengthT = number(0x0087)
                $0.sequenceName = text(0x0024)
            }
        case "CT":
            conditions.ct = .with {
                $0.kvp = number(0x0060)
                $0.tubeCurrentMa = number(0x1151)
                $0.exposureMas = number(0x1152)
                $0.helicalPitch = number(0x9311)
                $0.sliceThicknessMm = number(0x0050)
                $0.convolutionKernel = text(0x1210)
            }
        case "CR", "DX", "XA", "RF", "MG", "DR", "IO", "PX":
            conditions.xray = .with {
                $0.kvp = number(0x0060)
                $0.exposureMas = number(0x1152)
                if $0.exposureMas == 0 { $0.exposureMas = number(0x1153, scale: 0.001) }  // Exposure in µAs
                $0.exposureTimeMs = number(0x1150)
                $0.sourceToDetectorMm = number(0x1110)
            }
        case "US":
            conditions.us = .with {
                $0.transducerFrequencyMhz = number(0x6030, scale: 0.001)  // stored in kHz
                $0.transducerType = text(0x6031)
                $0.mechanicalIndex = number(0x5022)
                $0.depthOfScanFieldMm = number(0x5050)
            }
        case "PT", "NM":
            // The radiopharmaceutical attributes live in the first item of the Radiopharmaceutical Information
            // Sequence (0054,0016), or at the top level in older objects.
            let source = dataset.sequence(DICOMTag(0x0054, 0x0016)).first ?? dataset
            conditions.nm = .with {
                $0.radiopharmaceutical = source.string(DICOMTag(0x0018, 0x0031)) ?? ""
                $0.injectedDoseMbq = (source.double(DICOMTag(0x0018, 0x1074)).flatMap { $0.isFinite ? $0 : nil } ?? 0) / 1e6
                $0.halfLifeS = source.double(DICOMTag(0x0018, 0x1075)).flatMap { $0.isFinite ? $0 : nil } ?? 0
                $0.frameDurationMs = number(0x1242)
            }
            typed.formUnion([DICOMTag(0x0018, 0x0031), DICOMTag(0x0018, 0x1074), DICOMTag(0x0018, 0x1075)])
        default:
            break
        }
        for tag in dataset.tags where tag.group == 0x0018 && !typed.contains(tag) && conditions.extra.count < maximumExtraEntries {
            guard let value = extraValue(dataset, tag), value.utf8.count <= maximumValueBytes else { continue }
            conditions.extra[key(tag)] = value
        }
        return conditions
    }

    /// The `gggg,eeee` key of a tag, upper-case hex as DICOM writes it.
    static func key(_ tag: DICOMTag) -> String {
        func hex(_ value: UInt16) -> String {
            let digits = String(value, radix: 16, uppercase: true)
            return String(repeating: "0", count: 4 - digits.count) + digits
        }
        return "\(hex(tag.group)),\(hex(tag.element))"
    }

    private static func extraValue(_ dataset: DataSet, _ tag: DICOMTag) -> String? {
        guard let element = dataset[tag] else { return nil }
        switch element.vr {
        case .FD, .FL:
            let values = dataset.doubles(tag)
            return values.isEmpty ? nil : values.map { String($0) }.joined(separator: "\\")
        case .US, .SS, .UL, .SL:
            return dataset.integer(tag).map(String.init)
        default:
            return element.vr.isText ? dataset.string(tag) : nil
        }
    }

    /// `update` applied over `base` with protobuf merge semantics (set fields replace, map entries replace
    /// by key), then `extra` entries whose new value is empty removed: how a registrant adds or corrects.
    static func merge(_ base: Atrium_V1_AcquisitionConditions, _ update: Atrium_V1_AcquisitionConditions) throws -> Atrium_V1_AcquisitionConditions {
        var merged = base
        try merged.merge(serializedBytes: update.serializedBytes() as [UInt8])
        merged.extra = merged.extra.filter { !$0.value.isEmpty }
        return merged
    }

    /// INVALID_ARGUMENT naming the first problem in conditions a caller sent.
    static func validate(_ conditions: Atrium_V1_AcquisitionConditions, field: String) throws {
        guard conditions.extra.count <= maximumExtraEntries else {
            throw RegistryError.invalidArgument("\(field).extra has \(conditions.extra.count) entries; at most \(maximumExtraEntries)")
        }
        for (key, value) in conditions.extra {
            guard !key.isEmpty, key.utf8.count <= maximumKeyBytes else {
                throw RegistryError.invalidArgument("\(field).extra keys must be 1 to \(maximumKeyBytes) bytes")
            }
            guard value.utf8.count <= maximumValueBytes else {
                throw RegistryError.invalidArgument("\(field).extra['\(key)'] is longer than \(maximumValueBytes) bytes")
            }
        }
        let numbers: [Double]
        let texts: [String]
        switch conditions.modality {
        case .mr(let mr):
            numbers = [mr.repetitionTimeMs, mr.echoTimeMs, mr.inversionTimeMs, mr.flipAngleDeg, mr.fieldStrengthT]
            texts = [mr.sequenceName]
        case .ct(let ct):
            numbers = [ct.kvp, ct.tubeCurrentMa, ct.exposureMas, ct.helicalPitch, ct.sliceThicknessMm]
            texts = [ct.convolutionKernel]
        case .xray(let xray):
            numbers = [xray.kvp, xray.exposureMas, xray.exposureTimeMs, xray.sourceToDetectorMm]
            texts = []
        case .us(let us):
            numbers = [us.transducerFrequencyMhz, us.mechanicalIndex, us.depthOfScanFieldMm]
            texts = [us.transducerType]
        case .nm(let nm):
            numbers = [nm.injectedDoseMbq, nm.halfLifeS, nm.frameDurationMs]
            texts = [nm.radiopharmaceutical]
        case nil:
            numbers = []
            texts = []
        }
        guard numbers.allSatisfy(\.isFinite) else { throw RegistryError.invalidArgument("\(field) holds a number that is not finite") }
        guard texts.allSatisfy({ $0.utf8.count <= maximumValueBytes }) else {
            throw RegistryError.invalidArgument("\(field) holds a text longer than \(maximumValueBytes) bytes")
        }
    }
}
