#!/usr/bin/env python
"""Prints what one evaluation costs under the current protocol (a table, not a timed test).

  python benchmarks/eval_cost.py [--eval_batches=10000]

Rows: the Sec. 4 evaluation (every registered estimator on GaussianToy.eval_batches fixed
batches of 128 pairs, the default of gin/sec4_noniid.gin), first call (with tracing) and
second; the paper's probe and the converged ('fast') probe on the 100-d features of a step-0
Sec. 3.2 MLP encoder, full MNIST splits (every run fits the fast probe at step 0 and at its
last step).
"""

import argparse
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--eval_batches', type=int, default=None,
                      help='GaussianToy.eval_batches (default: the gin file\'s).')
  args = parser.parse_args(argv)
  import gin  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mi_tf import evaluation  # pylint: disable=g-import-not-at-top
  from mi_tf import launch  # pylint: disable=g-import-not-at-top

  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  rows = []
  bindings = ([f'GaussianToy.eval_batches = {args.eval_batches}']
              if args.eval_batches else [])
  launch.parse_gin([os.path.join(root, 'gin/sec4_noniid.gin')], bindings)
  task = gin.query_parameter('train.task').scoped_configurable_fn()
  task.build(128, 0)
  for call in ('first (traces)', 'second'):
    start = time.time()
    result = task.evaluate(0)
    rows.append((f'Sec. 4 evaluation, {task.eval_batches} batches, {call}',
                 time.time() - start,
                 f'I_NCE/eval SE {result["I_NCE/eval_sd"] / task.eval_batches ** 0.5:.5f}'))
  gin.clear_config()
  launch.parse_gin([os.path.join(root, 'gin/sec3_2_critics_bilinear_infonce.gin')])
  task = gin.query_parameter('train.task').scoped_configurable_fn()
  tf.keras.utils.set_random_seed(0)
  task.build(128, 0)
  f_tr, y_tr, f_te, y_te, _ = evaluation.encode_eval_splits(task.data, task.g1)
  for converged in (False, True):
    start = time.time()
    m = evaluation.probe_metrics(f_tr, y_tr, f_te, y_te, converged=converged)
    what = 'paper probe + converged (fast) probe' if converged else 'paper probe'
    detail = f'paper {100 * m["probe/test_accuracy"]:.2f}%' + (
        f', fast {100 * m["probe_fast/test_accuracy"]:.2f}%' if converged else '')
    rows.append((f'{what}, 60k x 100 step-0 MLP features', time.time() - start, detail))
  print('| evaluation | seconds | result |')
  print('|---|---|---|')
  for name, seconds, detail in rows:
    print(f'| {name} | {seconds:.1f} | {detail} |')
  return 0


if __name__ == '__main__':
  sys.exit(main())
