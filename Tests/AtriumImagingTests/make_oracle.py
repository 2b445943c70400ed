#!/usr/bin/env python3
"""Oracle for AtriumImaging: scipy.ndimage and numpy applied to deterministic test arrays.

Usage: make_oracle.py OUTPUT_DIR

Writes each input and each expected output as raw little-endian float32 (row-major) into OUTPUT_DIR,
and manifest.json listing {"name", "op", "params", "input", "shape", "expected", "expected_shape"}.
Ops: smooth (sigma), sobel (axis 0 or 1), magnitude, laplace, lines, bandpass (low, high) on 2-D inputs;
sum, max, min (axis) on 3-D inputs.
"""
import json
import os
import sys

import numpy as np
from scipy import ndimage


def images():
    rng = np.random.default_rng(20261129)
    yield "random64x48", rng.uniform(0, 100, (64, 48))
    yield "random5x9", rng.uniform(-50, 50, (5, 9))
    yield "row1x7", rng.uniform(0, 10, (1, 7))
    yield "column7x1", rng.uniform(0, 10, (7, 1))
    yield "single1x1", np.array([[3.25]])
    yield "small3x4", rng.uniform(0, 1000, (3, 4))
    yield "constant5x9", np.full((5, 9), 7.0)
    step = np.zeros((16, 20))
    step[:, 10:] = 100
    yield "verticalStep16x20", step
    yield "horizontalStep16x20", np.where(np.arange(16)[:, None] >= 8, 100.0, 0.0) * np.ones((1, 20))
    yield "diagonal17x17", np.where(np.add.outer(np.arange(17), -np.arange(17)) >= 0, 50.0, -20.0)
    yield "impulse9x11", np.pad(np.array([[1000.0]]), ((4, 4), (5, 5)))
    yield "line15x15", np.eye(15) * 80 + np.fliplr(np.eye(15)) * 40


def volumes():
    rng = np.random.default_rng(7)
    yield "volume6x5x7", rng.uniform(-100, 100, (6, 5, 7))
    yield "volume3x64x48", rng.uniform(0, 4095, (3, 64, 48)).round()
    yield "volume1x1x9", rng.uniform(0, 1, (1, 1, 9))
    yield "volume4x1x1", rng.uniform(0, 1, (4, 1, 1))


LINE_MASKS = [
    np.array([[-1, -1, -1], [2, 2, 2], [-1, -1, -1]], dtype=np.float64),
    np.array([[-1, 2, -1], [-1, 2, -1], [-1, 2, -1]], dtype=np.float64),
    np.array([[-1, -1, 2], [-1, 2, -1], [2, -1, -1]], dtype=np.float64),
    np.array([[2, -1, -1], [-1, 2, -1], [-1, -1, 2]], dtype=np.float64),
]


def smooth(a, sigma):
    return ndimage.gaussian_filter(a, sigma, mode="nearest", truncate=4.0)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    manifest = []

    def write(name, array):
        array = np.ascontiguousarray(array, dtype="<f4")
        array.tofile(os.path.join(out, name))
        return name

    def case(name, op, params, input_file, shape, expected):
        file = write(f"{name}.expected.f32", expected)
        manifest.append({"name": name, "op": op, "params": params, "input": input_file,
                         "shape": list(shape), "expected": file, "expected_shape": list(expected.shape)})

    for name, a in images():
        a = a.astype(np.float32)
        source = write(f"{name}.f32", a)
        for sigma in (0.5, 1.0, 1.5, 3.0):
            case(f"{name}.smooth{sigma}", "smooth", [sigma], source, a.shape, smooth(a, sigma))
        sx = ndimage.sobel(a, axis=1, mode="nearest")
        sy = ndimage.sobel(a, axis=0, mode="nearest")
        case(f"{name}.sobel0", "sobel", [0], source, a.shape, sy)
        case(f"{name}.sobel1", "sobel", [1], source, a.shape, sx)
        case(f"{name}.magnitude", "magnitude", [], source, a.shape, np.hypot(sx, sy))
        case(f"{name}.laplace", "laplace", [], source, a.shape, ndimage.laplace(a, mode="nearest"))
        responses = [np.abs(ndimage.convolve(a, m, mode="nearest")) for m in LINE_MASKS]
        case(f"{name}.lines", "lines", [], source, a.shape, np.max(responses, axis=0))
        for low, high in ((1.0, 3.0), (0.5, 1.5)):
            case(f"{name}.bandpass{low}-{high}", "bandpass", [low, high], source, a.shape, smooth(a, low) - smooth(a, high))

    for name, v in volumes():
        v = v.astype(np.float32)
        source = write(f"{name}.f32", v)
        for axis in range(3):
            case(f"{name}.sum{axis}", "sum", [axis], source, v.shape, v.sum(axis=axis, dtype=np.float32))
            case(f"{name}.max{axis}", "max", [axis], source, v.shape, v.max(axis=axis))
            case(f"{name}.min{axis}", "min", [axis], source, v.shape, v.min(axis=axis))

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{len(manifest)} cases")


if __name__ == "__main__":
    main()
