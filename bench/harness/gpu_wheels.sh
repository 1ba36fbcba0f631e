#!/usr/bin/env bash
# Wheels for `peft-bench gpu` on a GPU machine without network (Python 3.12, x86-64): the
# packages its image may lack (hydra-core and omegaconf: the benchmark is a preset of the app;
# psutil: sweeps' process supervision; accelerate: peft's), and ours pinned in constraints.txt
# where its versions differ (peft, transformers, tokenizers, huggingface-hub). Run here, in the
# repo root; carry .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."
pin() { grep -i "^$1==" constraints.txt; }
mkdir -p .whl
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "$(pin hydra-core)" "$(pin omegaconf)" "$(pin psutil)" "$(pin accelerate)" "$(pin peft)" "$(pin transformers)" "$(pin tokenizers)" "$(pin huggingface_hub)"
# omegaconf's parser runtime is published as source only: build its (pure-Python) wheel here
python3 -m pip wheel -q --no-deps -w .whl "$(pin antlr4-python3-runtime)"
ls -la .whl
