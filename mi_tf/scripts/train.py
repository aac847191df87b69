"""Trains one experiment of Tschannen et al. (ICLR 2020) from gin files.

  mi-tf-train --gin_file=sec3_2_critics_bilinear_infonce.gin --model_dir=/tmp/run
  mi-tf-train --gin_file=sec3_2_critics_bilinear_infonce.gin --gin_file=common/quick.gin \\
      --model_dir=/tmp/quick                               # the one-minute version
  python train.py --gin_file=gin/sec3_1_realnvp.gin --model_dir=/tmp/realnvp   # a checkout
  mi-tf-train --flagfile=run.flags                          # flags from a file, one a line

--gin_file takes a path or a name of the package's gin files (listed at the end of
--helpfull), from any directory. Rerunning the same command on the same --model_dir resumes
from its last checkpoint. Every session appends its log lines to <model_dir>/train.log.
Exit status: 0 done, 1 the run failed (one ERROR line: a bad gin binding, data not found, a
non-finite loss, a run directory of another config), 2 a bad command line.
"""

import logging
import sys

from absl import flags

from mi_tf import scripts

PROGRAM = 'mi-tf-train'
LOG_FILE = 'train.log'
# What the run reports as one ERROR line and exit status 1 (anything else: a traceback).
RUN_ERRORS = (ValueError, FileNotFoundError, RuntimeError, FloatingPointError)


def define_flags(fv):
  """The flags of mi-tf-train, into the FlagValues ``fv``."""
  flags.DEFINE_multi_string(
      'gin_file', None, 'gin config file: a path, or a name of the package gin files '
      '(sec3_1_realnvp.gin, gin/sec3_1_realnvp.gin, common/quick.gin; listed below). '
      'Repeatable; later files override earlier ones.', flag_values=fv)
  flags.DEFINE_multi_string(
      'gin_bindings', [], 'gin binding, e.g. "train.num_steps = 100" (repeatable; applied '
      'after the files, in order).', flag_values=fv)
  flags.DEFINE_list(
      'gin_search_paths', [], 'comma-separated folders where --gin_file names and gin '
      'includes are looked up (before the package gin files).', flag_values=fv)
  flags.DEFINE_string('model_dir', None, 'run directory (resumed if it holds a run).',
                      flag_values=fv)
  flags.DEFINE_string('data_dir', None, 'TFDS data directory (default: TFDS_DATA_DIR or '
                      '~/tensorflow_datasets); binds ImageHalves.data_dir.', flag_values=fv)
  flags.DEFINE_enum('distribution', 'default', ['default', 'mirrored', 'multi_worker', 'tpu'],
                    'tf.distribute strategy (default: one device).', flag_values=fv)
  flags.DEFINE_string('tpu', None, 'Cloud TPU name or grpc:// address (--distribution=tpu).',
                      flag_values=fv)
  flags.DEFINE_integer('seed', None, 'overrides train.seed.', flag_values=fv)
  flags.mark_flags_as_required(['gin_file', 'model_dir'], flag_values=fv)


def bindings_of(fv):
  """--gin_bindings, then the bindings --data_dir and --seed stand for."""
  bindings = list(fv.gin_bindings)
  if fv.data_dir:
    bindings.append(f'ImageHalves.data_dir = {fv.data_dir!r}')
  if fv.seed is not None:
    bindings.append(f'train.seed = {fv.seed}')
  return bindings


def main(argv=None):
  """Parses ``argv`` (argv[0]: the program; default sys.argv) afresh and trains.

  Returns:
    int exit status: 0 (also after --help), 1 the run failed, 2 a bad command line.
  """
  argv = list(sys.argv if argv is None else argv)
  fv, status = scripts.start(PROGRAM, __doc__, define_flags, argv, scripts.gin_files_help())
  if fv is None:
    return status
  with scripts.RunLog.attach(fv.model_dir, LOG_FILE, argv):
    from mi_tf import launch  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
    try:
      launch.train_with_gin(fv.model_dir, fv.gin_file, bindings_of(fv),
                            search_paths=fv.gin_search_paths, distribution=fv.distribution,
                            tpu=fv.tpu)
    except RUN_ERRORS as e:
      logging.error('%s: %s', type(e).__name__, e)
      return 1
  return 0


def run():
  """The console command (``mi-tf-train``, ``python -m mi_tf.scripts.train``): like
  absl.app.run, parses sys.argv and exits with main's status."""
  sys.exit(main(sys.argv))


if __name__ == '__main__':
  run()
