# Sourced (from the repository root) by scripts/make-contrastive-fixtures, and meant for any later script that
# runs sentence-transformers itself: the private venv .build/st-venv with sentence-transformers 6.2.* (PyPI),
# torch (CPU) and safetensors. st_python makes the venv when it is missing or incomplete, prints the path of
# its python, and fails (after pip's message) when an install fails. torch comes from a local CPU wheel in
# /opt/wheels when the machine has one (pip's default torch is the CUDA build, ~3 GB); the rest, and torch's
# own dependencies, from PyPI.
st_python() {
  local venv=.build/st-venv
  [ -x $venv/bin/python ] || python3 -m venv $venv >&2
  if ! $venv/bin/python -c "import torch, safetensors, sentence_transformers as st; assert st.__version__.startswith('6.2.')" 2>/dev/null; then
    if compgen -G "/opt/wheels/torch-*.whl" >/dev/null; then
      $venv/bin/pip install -q --no-index --no-deps --find-links /opt/wheels torch >&2 || return 1
    else
      echo "note: no torch wheel in /opt/wheels: installing pip's default torch (may be the ~3 GB CUDA build)" >&2
    fi
    $venv/bin/pip install -q torch "sentence-transformers==6.2.*" safetensors >&2 || return 1
  fi
  echo $venv/bin/python
}
