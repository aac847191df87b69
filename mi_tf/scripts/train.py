"""Trains one experiment of Tschannen et al. (ICLR 2020) from gin files.

  mi-tf-train --gin_file=sec3_2_critics_bilinear_infonce.gin --model_dir=/tmp/run
  mi-tf-train --gin_file=sec3_2_critics_bilinear_infonce.gin --gin_file=common/quick.gin \\
      --model_dir=/tmp/quick                               # the one-minute version
  python train.py --gin_file=gin/sec3_1_realnvp.gin --model_dir=/tmp/realnvp   # a checkout
  mi-tf-train --flagfile=run.flags                          # flags from a file, one a line

--gin_file takes a path or a name of the package's gin files (listed at the end of
--helpfull), from any directory. Rerunning the same command on the same --model_dir resumes
from its last checkpoint. Every session appends its log lines to <model_dir>/train.log.
SIGTERM or Ctrl-C (SIGINT) stops a run after a checkpoint (a second Ctrl-C at once).
A multi-worker run says which peers of TF_CONFIG it waits for and gives up after
--cluster_timeout seconds.
Exit status: 0 done, 1 the run failed (one ERROR line, --verbose adds the traceback: a bad
gin binding or gin file, data not found or corrupt, a non-finite loss, a run directory of
another config, a --model_dir that cannot be written, a peer or TPU that does not answer),
2 a bad command line, 130 Ctrl-C, 143 SIGTERM (128 + the signal; the run resumes).
"""

import os
import sys
import tempfile

from absl import flags

from mi_tf import gin_files
from mi_tf import scripts

PROGRAM = 'mi-tf-train'
LOG_FILE = 'train.log'


class ModelDirError(ValueError):
  """--model_dir is a file, or cannot be created."""


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
  flags.DEFINE_float('cluster_timeout', None, 'seconds a multi-worker run waits for its peers '
                     '(then for TensorFlow\'s collective setup), or a TPU run for its TPU, '
                     'before it gives up (default 300).', lower_bound=0.001, flag_values=fv)
  scripts.define_verbose(fv)
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
    try:
      check_model_dir(fv.model_dir)
      # pylint: disable=g-import-not-at-top  (they import TensorFlow)
      from mi_tf import distribute
      from mi_tf import launch
      with distribute.cluster_timeout(fv.cluster_timeout):
        launch.train_with_gin(fv.model_dir, fv.gin_file, bindings_of(fv),
                              search_paths=fv.gin_search_paths, distribution=fv.distribution,
                              tpu=fv.tpu)
    except (Exception, KeyboardInterrupt) as e:  # pylint: disable=broad-except
      if not (scripts.is_run_error(e) or isinstance(e, KeyboardInterrupt)):
        raise  # A bug: its traceback.
      return scripts.failure(e, fv.verbose, _gin_paths(fv), interrupted=(
          'Rerun the same command to resume from the newest checkpoint, if one was written.'))
  return 0


def check_model_dir(model_dir):
  """Refuses, in one message, a local --model_dir that is a file, or that does not exist and
  cannot be created (its nearest existing folder is a file, or takes no new folder: a
  read-only file system, no permission). A ``scheme://`` path is left to TensorFlow.

  Raises:
    ModelDirError.
  """
  if '://' in model_dir:
    return
  path = os.path.abspath(model_dir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ModelDirError(f'--model_dir {model_dir} is a file, not a directory: give a directory '
                        '(it is created if it does not exist).')
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if parent == path:
    return
  if not os.path.isdir(parent):
    raise ModelDirError(f'--model_dir {model_dir} cannot be created: {parent} is a file, not '
                        'a directory.')
  try:  # The one sure test of "can a folder be created here", also for root.
    os.rmdir(tempfile.mkdtemp(prefix='.mi_tf_write_check_', dir=parent))
  except OSError as e:
    raise ModelDirError(f'--model_dir {model_dir} cannot be created: {parent} takes no new '
                        f'folder ({e.strerror}). Give a directory on a writable file '
                        'system.') from None


def _gin_paths(fv):
  """The local gin files the command names (to point at the one with a syntax error)."""
  out = []
  for name in fv.gin_file or ():
    try:
      path = gin_files.resolve(name, fv.gin_search_paths)
    except (OSError, ValueError):
      continue
    if '://' not in path:
      out.append(path)
  return out


def run():
  """The console command (``mi-tf-train``, ``python -m mi_tf.scripts.train``): like
  absl.app.run, parses sys.argv and exits with main's status."""
  sys.exit(main(sys.argv))


if __name__ == '__main__':
  run()
