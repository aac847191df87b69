#!/usr/bin/env python
"""Trains one experiment of Tschannen et al. (ICLR 2020) from gin files.

  python train.py --gin_file=gin/sec3_2_critics_bilinear_infonce.gin --model_dir=/tmp/run
Rerunning the same command on the same --model_dir resumes from its last checkpoint.
"""

import argparse
import logging
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # TF's CPU start-up noise.


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--gin_file', action='append', default=[], required=True,
                      help='gin config file (repeatable; later files override earlier).')
  parser.add_argument('--gin_bindings', action='append', default=[],
                      help="gin binding, e.g. \"train.num_steps = 100\" (repeatable).")
  parser.add_argument('--model_dir', required=True, help='run directory (resumed if present).')
  parser.add_argument('--data_dir', default=None,
                      help='TFDS data directory (default: TFDS_DATA_DIR or ~/tensorflow_datasets).')
  parser.add_argument('--distribution', default='default',
                      choices=['default', 'mirrored', 'multi_worker', 'tpu'],
                      help='tf.distribute strategy (default: one device).')
  parser.add_argument('--tpu', default=None, help='Cloud TPU name or grpc:// address.')
  parser.add_argument('--seed', type=int, default=None, help='overrides train.seed.')
  args = parser.parse_args(argv)

  logging.basicConfig(level=logging.WARNING, format='%(asctime)s %(levelname)s %(message)s',
                      datefmt='%H:%M:%S')
  logging.getLogger('mi_tf').setLevel(logging.INFO)
  from mi_tf import launch
  bindings = list(args.gin_bindings)
  if args.data_dir:
    bindings.append(f'ImageHalves.data_dir = {args.data_dir!r}')
  if args.seed is not None:
    bindings.append(f'train.seed = {args.seed}')
  try:
    launch.train_with_gin(args.model_dir, args.gin_file, bindings,
                             distribution=args.distribution, tpu=args.tpu)
  except (ValueError, FileNotFoundError, RuntimeError, FloatingPointError) as e:
    logging.error('%s: %s', type(e).__name__, e)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
