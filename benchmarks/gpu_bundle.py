"""``make gpu-bundle``: what ``benchmarks/gpu_check.py`` needs on a GPU machine that has no
package registry and gets only the working tree, put in ``.device/`` (git-ignored), beside
``../shared``.

Copies the carried wheels (optuna, optuna-dashboard, sqlalchemy, alembic, mako, colorlog,
greenlet, cmaes, bottle) and the four Fashion-MNIST ``.gz`` files into ``.device/``, writes
their sha256 sums (which the check verifies there), and checks that the working tree plus
``.device/`` stays under the 64 MiB that travel. Exit status 2 when something is missing or
it is too large.

    python3 benchmarks/gpu_bundle.py [--wheels-from ../shared/wheels/h200-py312] [--data-from ../shared/data]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / ".device"
RAW = Path("FashionMNIST") / "raw"
FASHION_FILES = [f"{s}-{k}-idx{n}-ubyte.gz" for s in ("train", "t10k") for k, n in (("images", 3), ("labels", 1))]
# What the machine lacks and hpsearch needs; each must be among the carried wheels.
NEEDED = ("optuna", "optuna_dashboard", "sqlalchemy", "alembic", "mako", "colorlog", "greenlet", "cmaes", "bottle")
TRAVEL_LIMIT = 64 * 2**20  # the working tree that travels to the machine, .device/ included
MIB = 2**20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle(args) -> int:
    wheels, raw = sorted(Path(args.wheels_from).glob("*.whl")), Path(args.data_from) / RAW
    missing = [f for f in FASHION_FILES if not (raw / f).is_file()]
    lacking = [n for n in NEEDED if n not in {w.name.split("-")[0].lower() for w in wheels}]
    if not wheels:
        return _fail(f"no wheels in {args.wheels_from} (--wheels-from)")
    if missing:
        return _fail(f"{', '.join(missing)} missing in {raw} (--data-from)")
    if lacking:
        return _fail(f"{args.wheels_from} has no wheel for {', '.join(lacking)}")
    shutil.rmtree(BUNDLE / "wheels", ignore_errors=True)
    copies = [(w, BUNDLE / "wheels" / w.name) for w in wheels]
    copies += [(raw / n, BUNDLE / "data" / RAW / n) for n in FASHION_FILES]
    for src, dst in copies:  # real copies (a symbolic link would travel as a link), writable for the next bundle
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            dst.chmod(0o644)
        shutil.copyfile(src, dst)
        dst.chmod(0o644)
    (BUNDLE / "SHA256SUMS").write_text("".join(f"{_sha256(d)}  {d.relative_to(BUNDLE)}\n" for _, d in copies))
    size = sum(f.stat().st_size for f in BUNDLE.rglob("*") if f.is_file())
    mib = [sum(p.stat().st_size for p in paths) / MIB for paths in (wheels, [raw / f for f in FASHION_FILES])]
    print(f".device/: {len(wheels)} wheels ({mib[0]:.1f} MiB), Fashion-MNIST ({mib[1]:.1f} MiB), ", end="")
    print(f"{size / MIB:.1f} MiB in all")
    # What travels besides .device/: tracked and untracked-but-not-ignored files.
    ls = ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    try:
        listed = subprocess.run(ls, capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        print("not a git checkout: the size of the rest of the working tree is unknown")
        return 0
    tree = sum(p.stat().st_size for p in {REPO / n for n in listed if n} if p.is_file() and not p.is_symlink())
    print(
        f"working tree without .device/: {tree / MIB:.1f} MiB; with it: {(tree + size) / MIB:.1f} MiB "
        f"of the {TRAVEL_LIMIT // MIB} MiB that travel"
    )
    if tree + size > TRAVEL_LIMIT:
        return _fail("too large to travel: remove untracked files or wheels from .device/")
    print("on the GPU machine, carry .device and run: make gpu-check (or python3 benchmarks/gpu_check.py)")
    return 0


def bad_sums(prefix: str = "data/") -> list[str]:
    """The files under ``.device/PREFIX`` whose sha256 differs from SHA256SUMS (none without it)."""
    sums = BUNDLE / "SHA256SUMS"
    pairs = (line.split("  ", 1) for line in sums.read_text().splitlines() if line) if sums.is_file() else ()
    return [name for digest, name in pairs if name.startswith(prefix) and _sha256(BUNDLE / name) != digest]


def _fail(message: str) -> int:
    print(f"gpu-bundle: {message}", file=sys.stderr)
    return 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    wheels, data = REPO.parent / "shared" / "wheels" / "h200-py312", REPO.parent / "shared" / "data"
    parser.add_argument("--wheels-from", default=str(wheels), help="the wheels to carry (default: %(default)s)")
    parser.add_argument("--data-from", default=str(data), help="folder with FashionMNIST/raw (default: %(default)s)")
    return bundle(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
