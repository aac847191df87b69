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
  from mi_tf import jsonl  # pylint: disable=g-import-not-at-top
  from mi_tf import launch  # pylint: disable=g-import-not-at-top
  from mi_tf import run_dir  # pylint: disable=g-import-not-at-top

  # Each set builds its own task, and so its own tf.function: TensorFlow's retracing warning
  # says nothing here.
  tf.get_logger().setLevel('ERROR')
  start = time.time()
  config = os.path.join(args.model_dir, run_dir.CONFIG_FILE)
  final = jsonl.read_json(os.path.join(args.model_dir, run_dir.FINAL_METRICS_FILE))
  checkpoint = tf.train.latest_checkpoint(os.path.join(args.model_dir, run_dir.CHECKPOINTS))
  if not os.path.exists(config):
    sys.exit(f'{args.model_dir}: no {run_dir.CONFIG_FILE}; give a finished Sec. 4 run.')
  if not isinstance(final, dict):
    sys.exit(f'{args.model_dir}: no {run_dir.FINAL_METRICS_FILE}; give a finished Sec. 4 run.')
  if checkpoint is None:
    sys.exit(f'{args.model_dir}: no checkpoint under {run_dir.CHECKPOINTS}/.')

  def task_on(eval_seed=None, eval_batches=None):
    """The run's task (its config.gin), built, evaluating the set (eval_seed, eval_batches);
    None: the run's own."""
    bindings = [] if eval_seed is None else [f'GaussianToy.eval_seed = {eval_seed}']
    if eval_batches is not None:
      bindings.append(f'GaussianToy.eval_batches = {eval_batches}')
    launch.parse_gin([config], bindings)
    task = gin.query_parameter('train.task').scoped_configurable_fn()
    task.build(gin.query_parameter('train.batch_size'), gin.query_parameter('train.seed'))
    return task

  trained = task_on()
  if type(trained).__name__ != 'GaussianToy':
    sys.exit(f'{args.model_dir}: a {type(trained).__name__} run, not a Sec. 4 (GaussianToy) one.')
  tf.train.Checkpoint(critic=trained.critic).restore(checkpoint).expect_partial()

  def evaluate(task):
    """The trained critic on ``task``'s evaluation set: (mean, per-batch SD) of I_EST."""
    task.critic = trained.critic  # Restored once; a set's task only draws its batches.
    r = task.evaluate(final['step'], final=True)
    return r['I_EST/eval'], r['I_EST/eval_sd']

  own, _ = evaluate(trained)
  first, _ = evaluate(task_on(FIRST_STUDY_SEED, FIRST_STUDY_BATCHES))
  sets = [evaluate(task_on(s, args.eval_batches)) for s in range(args.eval_seeds)]
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
