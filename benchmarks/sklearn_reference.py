#!/usr/bin/env python
"""Converged scikit-learn reference for the pixel probe: lbfgs to tol 1e-8.

  python benchmarks/sklearn_reference.py      # prints a JSON line; takes minutes on purpose

Compare with the converged TF probe (``mi_tf.probe.converged_probe``) in BENCHMARKS.md.
"""
import json
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import run_benchmarks  # noqa: E402
from mi_tf import data as data_lib  # noqa: E402

if __name__ == '__main__':
  x_tr, _, y_tr = data_lib.eval_halves('mnist', 'train')
  x_te, _, y_te = data_lib.eval_halves('mnist', 'test')
  result = run_benchmarks.sklearn_converged(x_tr.reshape(len(x_tr), -1), y_tr,
                                            x_te.reshape(len(x_te), -1), y_te)
  print(json.dumps(result), flush=True)
