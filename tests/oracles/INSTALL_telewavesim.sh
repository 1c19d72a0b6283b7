#!/usr/bin/env bash
# Install telewavesim 0.2.1 (independent Kennett-reflectivity forward code, used only
# as a test oracle) into the project venv WITHOUT touching its numpy/setuptools.
#
# Why not a plain `pip install`: telewavesim's setup.py uses numpy.distutils. numpy 2.x
# still ships numpy.distutils for Python 3.11, but it breaks with modern setuptools
# (TypeError: Compiler.__init__() takes from 1 to 3 positional arguments but 4 were given).
# Recipe: build the wheel in a throw-away build venv holding setuptools<60 and the SAME
# numpy version as the project venv, then install only that wheel (--no-deps) into the
# project venv.
#
# The Fortran code has a compile-time layer limit (module conf, nlaymx = 30) and silently
# overruns its arrays beyond it; we patch it to $TWS_NLAYMX (default 200) before building. Its addition
# rule also multiplies by the reverberation operator where its inverse belongs; patched too (step 3).
#
# Usage:  bash tests/oracles/INSTALL_telewavesim.sh [path/to/venv]   (default: <repo>/.venv)
# Env:    TWS_NLAYMX (default 200), TWS_BUILD_DIR (default ${TMPDIR:-/tmp}/telewavesim-build)
# Idempotent: exits 0 early if the right build is already importable.  ~20 s after apt.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-$REPO/.venv}"
PY="$VENV/bin/python"
NLAYMX="${TWS_NLAYMX:-200}"
BUILD="${TWS_BUILD_DIR:-${TMPDIR:-/tmp}/telewavesim-build}"
VERSION=0.2.1

[ -x "$PY" ] || { echo "no python at $PY" >&2; exit 1; }

check() {
    "$PY" - "$NLAYMX" "$VERSION" <<'EOF'
import sys
import numpy as np
import telewavesim
from telewavesim import utils
from telewavesim.rmat_f import conf
assert telewavesim.__version__ == sys.argv[2], telewavesim.__version__
assert conf.nlaymx == int(sys.argv[1]), conf.nlaymx
m = utils.Model([35.0, 0.0], [2900.0, 3300.0], [6.5, 8.04], [3.75, 4.48], 'iso')
st = utils.run_plane(m, 0.06, 256, 0.1)
assert len(st) == 3 and np.all(np.isfinite(st[2].data)) and abs(st[2].data).max() > 0
# the reverberation patch: sediment over crust over mantle, vertical 8-9 s after P (the crust's PpPp
# through the sediment), Gaussian-filtered; 0.0325 with the patch (as xdisc and the ODE oracle), 0.0167
# without it
m = utils.Model([2.0, 30.0, 0.0], [2100.0, 2750.0, 3300.0], [2.5, 6.2, 8.0], [1.0, 3.6, 4.5], 'iso')
z = utils.run_plane(m, 0.065, 2048, 0.1)[2].data / 2048
f = np.fft.rfftfreq(2048, 0.1)
t_p = 2.0 * np.sqrt(1 / 2.5**2 - 0.065**2) + 30.0 * np.sqrt(1 / 6.2**2 - 0.065**2)
z = np.fft.irfft(np.fft.rfft(z) * np.exp(-(np.pi * f / 2.0) ** 2 + 2j * np.pi * f * t_p), 2048)
late = np.abs(z[80:90]).max()
assert abs(late - 0.0325) < 0.002, f"telewavesim without the reverberation patch (PpPp {late:.4f}, want 0.0325)"
print(f"telewavesim {telewavesim.__version__} OK (nlaymx={conf.nlaymx}, numpy {np.__version__})")
EOF
}

if check 2>/dev/null; then
    exit 0
fi

# 1. System build deps (Fortran compiler, LAPACK/BLAS).
if ! command -v gfortran >/dev/null \
   || ! dpkg -s liblapack-dev >/dev/null 2>&1 || ! dpkg -s libblas-dev >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y gfortran liblapack-dev libblas-dev
fi

# 2. Build venv: same interpreter, same numpy as the project venv, old setuptools.
NUMPY_VER="$("$PY" -c 'import numpy; print(numpy.__version__)')"
BPY="$BUILD/venv/bin/python"
if [ ! -x "$BPY" ]; then
    mkdir -p "$BUILD"
    "$PY" -m venv "$BUILD/venv"
fi
"$BPY" -m pip install -q "setuptools<60" wheel "numpy==$NUMPY_VER"

# 3. Source distribution, patched layer limit.
rm -rf "$BUILD/sdist" "$BUILD/src" "$BUILD/wheel"
mkdir -p "$BUILD/sdist" "$BUILD/src" "$BUILD/wheel"
"$BPY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: \
    -d "$BUILD/sdist" "telewavesim==$VERSION"
tar xzf "$BUILD/sdist/telewavesim-$VERSION.tar.gz" -C "$BUILD/src"
SRC="$BUILD/src/telewavesim-$VERSION"
sed -i -E "s/(INTEGER, PARAMETER :: nlaymx = )30\b/\1$NLAYMX/" "$SRC/src/rmat.f90"
grep -q "nlaymx = $NLAYMX\$" "$SRC/src/rmat.f90" || { echo "nlaymx patch failed" >&2; exit 1; }
# telewavesim 0.2.1's addition rule (rmat_sub.f90, SUBROUTINE addit) computes the inverse of the
# interlayer reverberation operator, reverbi = (I - rds ru)^-1, and then multiplies by reverb = I - rds ru
# instead (four places; its own comments say reverbi). The stack's response is then wrong wherever a
# wave bounces between two interfaces below the free surface: invisible with one interface, a few %
# with mild crustal contrasts, and larger than the signal 8-30 s after P under a soft sediment layer
# (tests/test_telewavesim_oracle.py compares it with xdisc's propagator and with the ODE oracle).
[ "$(grep -c 'MATMUL(reverb,' "$SRC/src/rmat_sub.f90")" = 4 ] || { echo "reverb patch: source not as expected" >&2; exit 1; }
sed -i 's/MATMUL(reverb,/MATMUL(reverbi,/g' "$SRC/src/rmat_sub.f90"
grep -q 'MATMUL(reverb,' "$SRC/src/rmat_sub.f90" && { echo "reverb patch failed" >&2; exit 1; }

# 4. Build the wheel with numpy.distutils under setuptools<60, install it (no deps).
"$BPY" -m pip wheel -q --no-deps --no-build-isolation --no-cache-dir -w "$BUILD/wheel" "$SRC"
"$PY" -m pip install -q --no-deps --force-reinstall "$BUILD"/wheel/telewavesim-"$VERSION"-*.whl

# 5. Verify.
check
