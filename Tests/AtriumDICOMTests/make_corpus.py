#!/usr/bin/env python3
"""Writes a DICOM test corpus with pydicom and dcmtk, and oracle.json: what pydicom reads back from each file.

Usage: make_corpus.py OUTDIR. The Swift tests parse every file with AtriumDICOM and compare with the oracle.
The JPEG-LS files are encoded by dcmtk's dcmcjpls and decoded for the oracle by pydicom through pylibjpeg's
libjpeg plugin, so neither side of the comparison is CharLS, which AtriumDICOM uses.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

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


def smooth(ds, frames=1):
    """Replaces random pixels with a gradient and a flat block, so that JPEG-LS run mode is exercised too."""
    rows, cols, bits = ds.Rows, ds.Columns, ds.BitsAllocated
    y, x = np.mgrid[0:rows, 0:cols]
    image = (x * 3 + y * 2) % (1 << min(bits, 10))
    image[rows // 4:rows // 2, cols // 4:cols // 2] = 7
    stack = np.stack([(image + 11 * f) % (1 << min(bits, 10)) for f in range(frames)])
    ds.PixelData = stack.astype({8: np.uint8, 16: np.uint16}[bits]).tobytes()
    return ds


# Files that dcmtk makes from an uncompressed file written by pydicom: name -> (source data set, command).
tools = {}
# Signed CT, 12 bits stored. dcmcjpls codes the whole 16-bit word (JPEG-LS precision 16) in its default raw mode;
# its cooked mode, which codes Bits Stored, aborts on signed data.
jls = base("CT", ExplicitVRLittleEndian, rows=40, cols=36, bits=16, signed=True)
jls.BitsStored, jls.HighBit = 12, 11
jls.PixelData = rng.integers(-2048, 2048, size=(40, 36), dtype=np.int16).tobytes()  # sign-extended, as scanners write
tools["ct_jpegls_signed_12_bits"] = (jls, ["dcmcjpls"])
masked = base("CT", ExplicitVRLittleEndian, rows=40, cols=36, bits=16, signed=True)
masked.BitsStored, masked.HighBit = 12, 11
masked.PixelData = (np.frombuffer(masked.PixelData, dtype=np.int16) & 0x0FFF).astype(np.uint16).tobytes()
tools["ct_jpegls_signed_12_bits_masked"] = (masked, ["dcmcjpls"])
# The high bits of `masked` are zero, so its samples reach JPEG-LS at precision 16 as unsigned 12-bit patterns.
# pydicom sign-extends JPEG-LS samples from the codestream's precision (16: nothing to do), not from Bits Stored
# as it does native pixels (pydicom#2009), so its pixel_array of this file keeps 3724 where the source held -372.
# The oracle for it is the source's pixel_array, which is also what dcmtk's own dcmdjpls gives back.
from_source = {"ct_jpegls_signed_12_bits_masked"}
tools["mr_jpegls_8_bit"] = (smooth(base("MR", ExplicitVRLittleEndian, rows=48, cols=40, bits=8)), ["dcmcjpls"])
# dcmcjpls interleaves colour by line unless told otherwise; by sample and not at all are the other two modes.
tools["us_jpegls_rgb"] = (base("US", ExplicitVRLittleEndian, bits=8, samples=3, photometric="RGB"), ["dcmcjpls"])
tools["us_jpegls_rgb_sample_interleaved"] = (base("US", ExplicitVRLittleEndian, bits=8, samples=3, photometric="RGB"), ["dcmcjpls", "+is"])
tools["us_jpegls_rgb_not_interleaved"] = (base("US", ExplicitVRLittleEndian, bits=8, samples=3, photometric="RGB"), ["dcmcjpls", "+in"])
# Several 1 KiB fragments per frame: found through the basic offset table, or (left empty) through SOI markers.
multi = base("XA", ExplicitVRLittleEndian, rows=48, cols=48, bits=16, frames=3)
tools["xa_jpegls_multiframe_fragments"] = (multi, ["dcmcjpls", "+fs", "1"])
tools["xa_jpegls_multiframe_no_offset_table"] = (multi, ["dcmcjpls", "+fs", "1", "-ot"])
tools["ct_jpegls_near_lossless"] = (smooth(base("CT", ExplicitVRLittleEndian, rows=32, cols=32)), ["dcmcjpls", "+en", "+md", "3"])
tools["mr_dcmtk_big_endian"] = (base("MR", ExplicitVRLittleEndian, bits=16, signed=True), ["dcmconv", "+tb"])
tools["ct_dcmtk_rle_multiframe"] = (base("CT", ExplicitVRLittleEndian, bits=16, frames=2), ["dcmcrle"])

names = list(cases) + list(tools)
source_arrays = {}
for name, ds in cases.items():
    path = os.path.join(out, name + ".dcm")
    little = ds.file_meta.TransferSyntaxUID != ExplicitVRBigEndian
    implicit = ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    pydicom.dcmwrite(path, ds, little_endian=little, implicit_vr=implicit, enforce_file_format=True)
with tempfile.TemporaryDirectory() as scratch:
    for name, (ds, command) in tools.items():
        source = os.path.join(scratch, name + ".dcm")
        pydicom.dcmwrite(source, ds, enforce_file_format=True)
        path = os.path.join(out, name + ".dcm")
        subprocess.run(command + [source, path], check=True)
        expected = pydicom.dcmread(source).pixel_array
        decoded = pydicom.dcmread(path).pixel_array
        if name in from_source:
            roundtrip = os.path.join(scratch, name + "-dcmdjpls.dcm")
            subprocess.run(["dcmdjpls", path, roundtrip], check=True)
            assert np.array_equal(pydicom.dcmread(roundtrip).pixel_array, expected), name
            shift = 16 - int(ds.BitsStored)
            assert np.array_equal((decoded << shift) >> shift, expected), name
            source_arrays[name] = expected
        elif "+en" not in command:
            # Lossless: what pydicom decodes from dcmtk's file is the source's pixel_array.
            assert np.array_equal(decoded, expected), name

oracle = {}
for name in names:
    path = os.path.join(out, name + ".dcm")
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
    arr = np.ascontiguousarray(source_arrays.get(name, back.pixel_array))
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
