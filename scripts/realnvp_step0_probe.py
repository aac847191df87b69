#!/usr/bin/env python
"""The step-0 probe of an invertible RealNVP encoder against the pixel baseline (Sec. 3.1).

At step 0 every coupling's shift network has truncated-normal(1e-4) kernels, so each shift is
of order 1e-9 and g1 is a permutation of the pixels plus a tiny, smooth function of the other
pixels. The paper's probe min-max scales every feature with its training range. A pixel that
is constant (0) over the training set has range 0 in pixel space and stays 0; after g1 its
range is about 1e-9. A float64 scaling stretches it to [0, 1], and the probe then sees an extra
random nonlinear feature of the image at full scale, which raised its accuracy; the probe now
scales in float32, as the authors' code did, and treats such a feature as constant.

This script builds g1 exactly as ``train.py --gin_file=GIN --seed=S`` does at step 0 (the
additive RealNVP of gin/sec3_1_realnvp.gin, or the affine one of gin/sec3_1_adversarial.gin)
and probes its features (paper protocol) four ways:

  as_trained:  the features as the training run probes them (``mi_tf.probe``: float32 scaling);
  float64_scaling: the same probe with the features scaled in float64 (the former protocol);
  rounded_1e-6: the features rounded to 1e-6 (pixels are multiples of 1/255, so this keeps
               the permuted pixels and removes the sub-1e-6 part);
  pixels:      the raw X1 pixels (the baseline).

  python scripts/realnvp_step0_probe.py --seed=0 [--gin_file=gin/sec3_1_adversarial.gin]

Prints one JSON dict: accuracies, the number of feature columns whose training range is
below 1e-6, and the seconds taken.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--gin_file', default='gin/sec3_1_realnvp.gin')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--data_dir', default=None)
  args = parser.parse_args(argv)

  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mi_tf import data as data_lib  # pylint: disable=g-import-not-at-top
  from mi_tf import evaluation  # pylint: disable=g-import-not-at-top
  from mi_tf import probe as probe_lib  # pylint: disable=g-import-not-at-top
  import gin  # pylint: disable=g-import-not-at-top
  from mi_tf import launch  # pylint: disable=g-import-not-at-top

  start = time.time()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  launch.parse_gin([os.path.join(root, args.gin_file)])
  task = gin.query_parameter('train.task').scoped_configurable_fn()  # As train.py builds it.
  # As train_lib.train does before building the task: the step-0 weights of seed S.
  tf.keras.utils.set_random_seed(args.seed)
  task.build(128, args.seed)

  x1_tr, _, y_tr = data_lib.eval_halves('mnist', 'train', args.data_dir, 0.0)
  x1_te, _, y_te = data_lib.eval_halves('mnist', 'test', args.data_dir, 0.0)
  f_tr, f_te = evaluation.encode(task.g1, x1_tr), evaluation.encode(task.g1, x1_te)
  p_tr, p_te = x1_tr.reshape(len(x1_tr), -1), x1_te.reshape(len(x1_te), -1)

  def acc(a, b):
    return probe_lib.linear_probe(a, y_tr, b, y_te, seed=0)['test_accuracy']

  def acc_float64_scaling(a, b):
    """The former protocol: min-max scaling in float64 (sub-resolution ranges stretched)."""
    from sklearn.preprocessing import MinMaxScaler  # pylint: disable=g-import-not-at-top
    scaler = MinMaxScaler().fit(np.asarray(a, np.float64))
    # Scaled features in [0, 1] are exactly representable in float32's range, so the float32
    # scaling of linear_probe leaves them as they are.
    return acc(scaler.transform(np.asarray(a, np.float64)),
               scaler.transform(np.asarray(b, np.float64)))

  f_range = f_tr.max(0) - f_tr.min(0)
  p_range = p_tr.max(0) - p_tr.min(0)
  result = {
      'gin_file': args.gin_file, 'seed': args.seed,
      'max_abs_shift_from_a_permutation': float(np.max(np.abs(
          np.sort(f_tr, axis=1) - np.sort(p_tr, axis=1)))),
      'pixel_columns_constant_in_train': int(np.sum(p_range == 0)),
      'feature_columns_with_range_below_1e-6': int(np.sum(f_range < 1e-6)),
      'probe_test_accuracy': {
          'as_trained': acc(f_tr, f_te),
          'float64_scaling': acc_float64_scaling(f_tr, f_te),
          'rounded_1e-6': acc(np.round(f_tr, 6), np.round(f_te, 6)),
          'pixels': acc(p_tr, p_te),
      },
  }
  result['seconds'] = time.time() - start
  print(json.dumps(result, indent=2))
  return 0


if __name__ == '__main__':
  sys.exit(main())
