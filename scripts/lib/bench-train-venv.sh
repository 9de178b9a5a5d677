# Sourced by scripts/bench-train and scripts/gguf-to-hf (from the repository root): the private venv of the
# PyTorch training peer, .build/bench-train-venv, with torch (CPU), transformers 5.23.0, peft and safetensors.
# torch comes from a local CPU wheel in /opt/wheels when the machine has one (pip's default torch is the
# CUDA build, ~3 GB); the rest, and torch's own dependencies, from PyPI.
bench_train_python() {
  local venv=.build/bench-train-venv
  [ -x $venv/bin/python ] || python3 -m venv $venv >&2
  if ! $venv/bin/python -c "import torch, transformers, peft, safetensors" 2>/dev/null; then
    if compgen -G "/opt/wheels/torch-*.whl" >/dev/null; then
      $venv/bin/pip install -q --no-index --no-deps --find-links /opt/wheels torch >&2
    else
      echo "note: no torch wheel in /opt/wheels: installing pip's default torch (may be the ~3 GB CUDA build)" >&2
    fi
    $venv/bin/pip install -q torch transformers==5.23.0 peft safetensors >&2
  fi
  echo $venv/bin/python
}
