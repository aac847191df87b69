#!/usr/bin/env python
"""A trained Sec. 4 critic (Fig. 4c) evaluated on other evaluation sets.

A Sec. 4 run evaluates its critic on ``GaussianToy.eval_batches`` batches drawn with the
stateless seeds (eval_seed, -1 - k), k < eval_batches, eval_seed = the run's seed. The first
study evaluated every run on ONE set, the 1,000 batches of eval_seed 0; the study draws
10,000 from each run's own seed. This script restores the newest checkpoint of a finished
Sec. 4 run and measures its trained estimator on

  own_set:     the run's own set (its config's eval_batches and seed): must reproduce the run's
               final ``I_EST/eval`` (``final_metrics.json``), a check that the restored critic
               is the run's;
  first_study: the first study's shared set (eval_seed 0, 1,000 batches);
  eval_seeds:  ``--eval_seeds`` sets of ``--eval_batches`` batches, eval_seed 0, 1, ...: their
               mean, their SD over the sets (what independent evaluation sets add to the spread
               over seeds) and the SD that independent batches predict (the per-batch SD over
               sqrt(eval_batches)).

  python scripts/sec4_eval_sets.py --model_dir=RUNS/sec4_noniid/seed0 [--eval_seeds=10]

Prints one JSON dict (estimates in nats).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FIRST_STUDY_SEED = 0        # The first study's GaussianToy.eval_seed ...
FIRST_STUDY_BATCHES = 1000  # ... and eval_batches, the same for every run.


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--model_dir', required=True, help='a finished Sec. 4 run directory')
  parser.add_argument('--eval_seeds', type=int, default=10)
  parser.add_argument('--eval_batches', type=int, default=10000)
  args = parser.parse_args(argv)

  import gin  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mi_tf import launch  # pylint: disable=g-import-not-at-top

  # Each set builds its own task, and so its own tf.function: TensorFlow's retracing warning
  # says nothing here.
  tf.get_logger().setLevel('ERROR')
  start = time.time()
  config = os.path.join(args.model_dir, 'config.gin')
  finals = os.path.join(args.model_dir, 'final_metrics.json')
  checkpoint = tf.train.latest_checkpoint(os.path.join(args.model_dir, 'checkpoints'))
  for path in (config, finals):
    if not os.path.exists(path):
      sys.exit(f'{args.model_dir}: no {os.path.basename(path)}; give a finished Sec. 4 run.')
  if checkpoint is None:
    sys.exit(f'{args.model_dir}: no checkpoint under checkpoints/.')
  with open(finals) as f:
    final = json.load(f)

  def evaluate(eval_seed, eval_batches):
    """The run's critic on the set (eval_seed, eval_batches): (mean, per-batch SD)."""
    bindings = [] if eval_seed is None else [f'GaussianToy.eval_seed = {eval_seed}']
    if eval_batches is not None:
      bindings.append(f'GaussianToy.eval_batches = {eval_batches}')
    launch.parse_gin([config], bindings)
    task = gin.query_parameter('train.task').scoped_configurable_fn()
    if type(task).__name__ != 'GaussianToy':
      sys.exit(f'{args.model_dir}: a {type(task).__name__} run, not a Sec. 4 (GaussianToy) one.')
    task.build(gin.query_parameter('train.batch_size'), gin.query_parameter('train.seed'))
    tf.train.Checkpoint(critic=task.critic).restore(checkpoint).expect_partial()
    r = task.evaluate(final['step'], final=True)
    return r['I_EST/eval'], r['I_EST/eval_sd']

  own, _ = evaluate(None, None)
  first, _ = evaluate(FIRST_STUDY_SEED, FIRST_STUDY_BATCHES)
  sets = [evaluate(s, args.eval_batches) for s in range(args.eval_seeds)]
  means = np.array([m for m, _ in sets])
  print(json.dumps({
      'model_dir': args.model_dir,
      'checkpoint': os.path.basename(checkpoint),
      'final_I_EST/eval': final.get('I_EST/eval'),
      'own_set': own,
      'first_study': first,
      'eval_seeds': args.eval_seeds,
      'eval_batches': args.eval_batches,
      'eval_seeds_mean': float(means.mean()),
      'eval_seeds_sd': float(means.std(ddof=1)) if len(means) > 1 else None,
      'predicted_sd': float(np.mean([sd for _, sd in sets]) / np.sqrt(args.eval_batches)),
      'per_set': [float(m) for m in means],
      'seconds': round(time.time() - start, 1),
  }, indent=1))


if __name__ == '__main__':
  main()
