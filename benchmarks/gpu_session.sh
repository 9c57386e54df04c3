#!/usr/bin/env bash
# One prepared run for a session lent a GPU (the device tool: at most 10
# minutes a command, about 15 minutes of device time a session): the long
# bAbI dnc1 run (checkpoints/babi-dnc1) resumed there for BABI_SECONDS, then
# its newest resume state, best parameters and metrics packed into $OUT for
# the session to commit. The brief's order puts bAbI first; see
# docs/scaling.md ("On a lent GPU") for how to prepare and call it.
#
#   prepare once (here):  bash benchmarks/gpu_session.sh --prepare
#   call (device tool):   run(command="bash benchmarks/gpu_session.sh",
#                             carry=[".whl", ".gpu"], timeout_s=560)
#   afterwards (here):    bash benchmarks/gpu_session.sh --unpack FILES_AT
set -uo pipefail

RUN=runs/gpu-babi-dnc1          # never the CPU run's own folder
BABI_SECONDS=${BABI_SECONDS:-420}
DATA=${BABI_DATA:-../shared/data/babi/en-10k}

if [[ "${1:-}" == "--prepare" ]]; then
  # dm-haiku (and its jmp) are the only packages the GPU image lacks; the
  # bAbI files sit outside the checkout, so they travel as one archive.
  python3 -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .whl dm-haiku==0.0.17 jmp==0.0.4 \
    || exit 1
  mkdir -p .gpu
  tar -czf .gpu/babi-en10k.tar.gz -C "$(dirname "$DATA")" "$(basename "$DATA")"
  du -sh .whl .gpu
  exit 0
fi

if [[ "${1:-}" == "--unpack" ]]; then
  # FILES_AT: where the device tool put $OUT's files. Replaces the committed
  # run's resume state and best parameters with the GPU run's.
  from=${2:?usage: --unpack FILES_AT}
  tmp=$(mktemp -d)
  tar -xzf "$from/babi-dnc1.tar.gz" -C "$tmp" || exit 1
  rm -rf checkpoints/babi-dnc1/checkpoints checkpoints/babi-dnc1/best
  cp -r "$tmp"/gpu-babi-dnc1/* checkpoints/babi-dnc1/
  ls checkpoints/babi-dnc1/checkpoints checkpoints/babi-dnc1/best
  exit 0
fi

: "${OUT:?OUT must name the folder whose files come back}"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader \
  | tee "$OUT/gpu.txt"
python3 -c "import jax, haiku; print('jax', jax.__version__, jax.devices())" \
  || exit 1

mkdir -p /tmp/babi && tar -xzf .gpu/babi-en10k.tar.gz -C /tmp/babi || exit 1
rm -rf "$RUN" && mkdir -p runs && cp -r checkpoints/babi-dnc1 "$RUN"
# SIGTERM at the deadline: the trainer writes a final checkpoint and stops.
timeout -s TERM "$BABI_SECONDS" python3 -m experiments.babi_train \
  --data-dir /tmp/babi/en-10k --preset dnc1 --out "$RUN" --resume \
  --no-progress > "$OUT/babi.log" 2>&1
echo "trainer exit status $? (124: stopped at the deadline)"
tail -5 "$OUT/babi.log"

# The newest resume state only (each is ~10 MB; $OUT files are <= 16 MB).
newest=$(ls "$RUN/checkpoints" | sort -n | tail -1)
for step in $(ls "$RUN/checkpoints"); do
  [[ "$step" == "$newest" ]] || rm -rf "$RUN/checkpoints/$step"
done
tar -czf "$OUT/babi-dnc1.tar.gz" -C runs "$(basename "$RUN")/checkpoints" \
  "$(basename "$RUN")/best" "$(basename "$RUN")/metrics.jsonl" \
  "$(basename "$RUN")/summary.json"
ls -la "$OUT"
