#!/usr/bin/env bash
# The wheels `scripts/gpu_smoke.py` needs on a GPU machine that has only torch, transformers, lightning, accelerate
# and peft (and their requirements) installed and no network: built or downloaded here into gpu_wheels/.
#
#   PYTHON=.venv/bin/python scripts/gpu_wheels.sh     # needs PyPI here, and torch in $PYTHON (DeepSpeed builds on it)
#
# The set was found by tracing the smoke's imports: medzero_pl needs omegaconf, docstring-parser and rapidfuzz beyond the five
# packages, DeepSpeed needs the rest (its requirements that none of the five brings). Pure-Python wheels serve any
# Python; the compiled ones (msgpack, pydantic-core, rapidfuzz) are fetched for CPython 3.11, 3.12 and 3.13 on
# x86_64 Linux, and pip picks the matching one there (`--find-links` + `requirements.txt`), so the GPU machine's
# Python version need not be known here. Versions are those the test suite runs with. transformers is carried too,
# though the GPU machine has one: the project needs >= 5.19, the GPU image was last seen with 5.17 (whose
# requirements 5.19 shares), and `pip install --target` puts ours first on the path.
# DeepSpeed is a source package: its wheel is built here with no C++/CUDA op prebuilt (DS_BUILD_OPS=0); ZeRO-3 with
# torch's AdamW, the only path the smoke takes, uses none.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=gpu_wheels
LIMIT_MIB=60
DEEPSPEED=deepspeed==0.19.8
PURE=(
    transformers==5.19.0
    omegaconf==2.4.0 docstring-parser==0.18.0
    hjson==3.1.0 einops==0.8.2 py-cpuinfo==9.0.0
    pydantic==2.14.4 annotated-types==0.8.0 typing-inspection==0.4.5
    typing-extensions==4.16.0 # pydantic needs a recent one; the GPU image's version is unknown
)
COMPILED=(msgpack==1.2.4 pydantic-core==2.50.5 rapidfuzz==3.14.6 ninja==1.13.2)
PYTHONS=(3.11 3.12 3.13)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64)

rm -rf "$OUT"
mkdir -p "$OUT"
DS_BUILD_OPS=0 "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$OUT" "$DEEPSPEED"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$OUT" "${PURE[@]}"
for version in "${PYTHONS[@]}"; do
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$OUT" --implementation cp \
        --python-version "$version" "${PLATFORMS[@]/#/--platform=}" "${COMPILED[@]}"
done
printf '%s\n' "$DEEPSPEED" "${PURE[@]}" "${COMPILED[@]}" >"$OUT/requirements.txt"

total=$(du -cb "$OUT"/*.whl | tail -1 | cut -f1)
mib=$(((total + 1048575) / 1048576))
ls -1 "$OUT"
echo "gpu_wheels/: $(ls "$OUT"/*.whl | wc -l) wheels, ${mib} MiB (limit ${LIMIT_MIB} MiB)"
if ((total > LIMIT_MIB * 1048576)); then
    echo "error: gpu_wheels/ holds ${mib} MiB, over the ${LIMIT_MIB} MiB that can travel with the working tree" >&2
    exit 1
fi
cat <<'EOF'
On the GPU machine (gpu_wheels/ travels with the working tree; it is git-ignored, so carry it), from the repo root:
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/gpu_site --find-links gpu_wheels -r gpu_wheels/requirements.txt && PYTHONPATH=/tmp/gpu_site:. python3 scripts/gpu_smoke.py --out "$OUT/gpu_smoke.json"
EOF
