#!/usr/bin/env python3
"""Writes a DICOM test corpus with pydicom, and oracle.json: what pydicom reads back from each file.

Usage: make_corpus.py OUTDIR. The Swift tests parse every file with AtriumDICOM and compare with the oracle.
"""
import hashlib
import json
import os
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         DeflatedExplicitVRLittleEndian, RLELossless, generate_uid)

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)


def base(modality, syntax, name="Doe^John", charset=None, rows=16, cols=12, bits=16, signed=False,
         frames=1, samples=1, photometric="MONOCHROME2"):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = name
    ds.PatientID = "PAT-" + modality
    ds.Modality = modality
    ds.StudyDate = "20261129"
    ds.StationName = "STATION-1"
    ds.BodyPartExamined = "CHEST"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    dtype = {8: np.uint8, 16: np.uint16, 32: np.uint32}[bits]
    if signed:
        dtype = {8: np.int8, 16: np.int16, 32: np.int32}[bits]
    shape = (frames, rows, cols, samples) if frames > 1 else (rows, cols, samples)
    info = np.iinfo(dtype)
    arr = rng.integers(max(info.min, -1000), min(info.max, 4000), size=shape, dtype=dtype)
    if samples == 1:
        arr = arr[..., 0]
    ds.PixelData = arr.tobytes()
    return ds


cases = {}
cases["ct_explicit_le"] = base("CT", ExplicitVRLittleEndian)
cases["ct_explicit_le"].KVP = "120"
cases["ct_explicit_le"].SpiralPitchFactor = 0.9375
cases["mr_implicit_le"] = base("MR", ImplicitVRLittleEndian, bits=16, signed=True)
cases["mr_implicit_le"].RepetitionTime = "4000.5"
cases["mr_implicit_le"].EchoTime = "90"
cases["us_big_endian"] = base("US", ExplicitVRBigEndian, bits=8, samples=3, photometric="RGB")
cases["cr_deflated"] = base("CR", DeflatedExplicitVRLittleEndian, photometric="MONOCHROME1")
cases["dx_multiframe_32"] = base("DX", ExplicitVRLittleEndian, bits=32, frames=3)
cases["mr_utf8"] = base("MR", ExplicitVRLittleEndian, name="Müller^Jürgen", charset="ISO_IR 192")
cases["ct_latin1"] = base("CT", ExplicitVRLittleEndian, name="Müller^Jürgen", charset="ISO_IR 100")
cases["mr_japanese"] = base("MR", ExplicitVRLittleEndian, name="Yamada^Tarou=山田^太郎=やまだ^たろう",
                            charset=["", "ISO 2022 IR 87"])
ct = base("CT", ExplicitVRLittleEndian)
private = Dataset()
private.add_new(0x00091010, "LO", "inside a private sequence")
ct.add_new(0x00090010, "LO", "ATRIUM TEST")
ct.add_new(0x00091001, "SQ", Sequence([private, Dataset()]))
ct.ReferencedImageSequence = Sequence([Dataset()])
ct.ReferencedImageSequence[0].ReferencedSOPInstanceUID = generate_uid()
cases["ct_private_sequences"] = ct
planar = base("US", ExplicitVRLittleEndian, bits=8, samples=3, photometric="RGB")
planar.PlanarConfiguration = 1
cases["us_rgb_planar"] = planar
signed12 = base("CT", ExplicitVRLittleEndian, bits=16, signed=True)
signed12.BitsStored = 12
signed12.HighBit = 11
raw = np.frombuffer(signed12.PixelData, dtype=np.int16).copy() & 0x0FFF
signed12.PixelData = raw.astype(np.uint16).tobytes()
cases["ct_signed_12_bits"] = signed12
rle = base("CT", ExplicitVRLittleEndian)
rle.compress(RLELossless)
cases["ct_rle"] = rle
rgb_rle = base("US", ExplicitVRLittleEndian, bits=8, samples=3, photometric="RGB", frames=2)
rgb_rle.compress(RLELossless)
cases["us_rgb_rle_multiframe"] = rgb_rle

oracle = {}
for name, ds in cases.items():
    path = os.path.join(out, name + ".dcm")
    little = ds.file_meta.TransferSyntaxUID != ExplicitVRBigEndian
    implicit = ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    pydicom.dcmwrite(path, ds, little_endian=little, implicit_vr=implicit, enforce_file_format=True)
    back = pydicom.dcmread(path)
    entry = {
        "transfer_syntax": str(back.file_meta.TransferSyntaxUID),
        "patient_name": str(back.PatientName),
        "patient_id": back.PatientID,
        "modality": back.Modality,
        "sop_instance_uid": back.SOPInstanceUID,
        "study_instance_uid": back.StudyInstanceUID,
        "rows": int(back.Rows),
        "columns": int(back.Columns),
        "bits_allocated": int(back.BitsAllocated),
        "frames": int(getattr(back, "NumberOfFrames", 1) or 1),
        "photometric": back.PhotometricInterpretation,
        "station_name": back.StationName,
        "pixel_bytes": len(back.PixelData),
        "pixel_sha256": hashlib.sha256(back.PixelData).hexdigest(),
    }
    arr = np.ascontiguousarray(back.pixel_array)
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    entry["pixel_array_sha256"] = hashlib.sha256(arr.tobytes()).hexdigest()
    if "ReferencedImageSequence" in back:
        entry["referenced_sop_instance_uid"] = back.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    if (0x0009, 0x1001) in back:
        entry["private_items"] = len(back[0x0009, 0x1001].value)
    oracle[name] = entry

with open(os.path.join(out, "oracle.json"), "w") as f:
    json.dump(oracle, f, indent=1, ensure_ascii=False)
print(f"{len(oracle)} files in {out}")
