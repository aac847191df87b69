"""Linear-probe (or k-NN) evaluation of an exported encoder (or of raw pixels), paper protocol.

  mi-tf-probe --saved_model=RUN/export             # features g1(X1) of the SavedModel
  mi-tf-probe --pixels                             # raw-pixel baseline on X1 (~85%)
  mi-tf-probe --pixels --noise_std=0.05            # noisy pixels (Sec. 3.1, ~84%)
  mi-tf-probe --pixels --probe=converged           # converged L-BFGS probe
  mi-tf-probe --pixels --probe=fast                # same, looser tolerance (~3x faster)
  mi-tf-probe --saved_model=RUN/export --probe=knn # k-NN, cosine, k=20 (--knn_k)
  python eval_probe.py --saved_model=RUN/export    # the same, from a checkout

Loads only the SavedModel (no mi_tf model classes), extracts frozen features of the train and
test top halves, fits min-max scaling (in float32, as the authors' code: a feature whose
training range is below float32 resolution is constant) + SAGA logistic regression (C=10,
tol=0.1) and prints the result. With --saved_model it is also written to
<saved_model>/../probe_result.json (probe_knn_result.json with --probe=knn; or --output); with
--pixels only to --output, if given.
--dataset and --noise_std default to what the export's mi_tf_metadata.json says the run
trained with (else mnist, 0.0). --also_fast adds the converged probe's accuracy; --also_knn
also runs the k-NN probe and writes its probe_knn_result.json beside the result.
--probe=converged fits the same model to convergence instead
(mi_tf.probe.converged_probe: full-batch L-BFGS in TensorFlow, about 30 s on 60k x 392 pixels);
--probe=fast stops the same solver at a looser tolerance (5.7 s there, within 0.1 point;
BENCHMARKS.md section 5).
--probe=knn classifies each test example by a majority vote of its --knn_k (20) most
cosine-similar training examples (mi_tf.probe.knn_probe; --knn_temperature=0.07 weights the
votes exp(similarity / T)); its train accuracy is leave-one-out on 1000 training examples.
Exit status: 0 done, 1 the probe failed (one ERROR line; --verbose adds the traceback), 2 a
bad command line, 130 Ctrl-C.
"""

import os
import sys

from absl import flags

from mi_tf import scripts

PROGRAM = 'mi-tf-probe'
RESULT_FILE = 'probe_result.json'  # Next to the export (in the run directory).
# --probe=knn writes its own file: the report reads probe_result.json as a linear probe's.
KNN_RESULT_FILE = 'probe_knn_result.json'


def define_flags(fv):
  """The flags of mi-tf-probe, into the FlagValues ``fv``."""
  flags.DEFINE_string('saved_model', None, "SavedModel directory (a run's export/).",
                      flag_values=fv)
  flags.DEFINE_boolean('pixels', False, 'probe the raw pixels of X1.', flag_values=fv)
  flags.DEFINE_string('dataset', None, "TFDS dataset (mnist, cifar10; default: the export's "
                      'metadata, else mnist).', flag_values=fv)
  flags.DEFINE_string('data_dir', None, 'TFDS data directory.', flag_values=fv)
  flags.DEFINE_float('noise_std', None, 'coupled noise added to the halves (Sec. 3.1 residual '
                     "MLP: 0.05; default: the export's metadata, else 0).", flag_values=fv)
  flags.DEFINE_string('train_split', 'train', 'TFDS split the probe is fitted on.',
                      flag_values=fv)
  flags.DEFINE_string('test_split', 'test', 'TFDS split the probe is tested on.',
                      flag_values=fv)
  flags.DEFINE_integer('seed', 0, 'SAGA random_state.', flag_values=fv)
  flags.DEFINE_enum('probe', 'paper', ['paper', 'converged', 'fast', 'knn'],
                    "'paper': SAGA, tol=0.1 (the paper's protocol, default); 'converged': the "
                    'same objective minimised to convergence (L-BFGS, gradient 1e-6); '
                    "'fast': L-BFGS stopped at gradient 1e-4 (within 0.1 point of "
                    "'converged', BENCHMARKS.md); 'knn': majority vote of the --knn_k "
                    'nearest training examples by cosine similarity.', flag_values=fv)
  flags.DEFINE_integer('knn_k', None, "neighbours of --probe=knn (default 20).", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_float('knn_temperature', None, 'with --probe=knn: weight each vote by '
                     'exp(similarity / T) (0.07 as in solo-learn; default: majority vote).',
                     lower_bound=0.0, flag_values=fv)
  flags.DEFINE_boolean('also_fast', False, "also fit the 'fast' converged probe on the same "
                       'features and add fast_test_accuracy / fast_train_accuracy to the '
                       "result (the study's pixel baselines do, for the claims' second "
                       'protocol).', flag_values=fv)
  flags.DEFINE_boolean('also_knn', False, 'also run the k-NN probe (--probe=knn, with '
                       '--knn_k and --knn_temperature) and write its result beside --output '
                       f"as {KNN_RESULT_FILE}, before the linear probe's (the study's pixel "
                       "baselines do, for the claims' k-NN protocol); needs --output or "
                       '--saved_model, and a linear --probe.', flag_values=fv)
  flags.DEFINE_string('output', None, 'JSON result path (default: <saved_model>/../'
                      f'{RESULT_FILE}, {KNN_RESULT_FILE} with --probe=knn; with --pixels: '
                      'none, the result is only printed).',
                      flag_values=fv)
  scripts.define_verbose(fv)
  flags.register_multi_flags_validator(
      ['saved_model', 'pixels'], lambda v: (v['saved_model'] is not None) != bool(v['pixels']),
      message='give exactly one of --saved_model and --pixels', flag_values=fv)
  flags.register_multi_flags_validator(
      ['also_knn', 'probe', 'output', 'saved_model'],
      lambda v: not v['also_knn'] or (v['probe'] != 'knn' and bool(
          v['output'] or v['saved_model'])),
      message='--also_knn needs a linear --probe (not knn) and a result file (--output, or '
              '--saved_model)', flag_values=fv)


def output_path(fv):
  """Where the result is written: --output, else <saved_model>/../probe_result.json
  (probe_knn_result.json with --probe=knn), else None (--pixels: printed only)."""
  if fv.output:
    return fv.output
  if fv.saved_model:
    return os.path.join(os.path.dirname(os.path.abspath(fv.saved_model.rstrip('/'))),
                        KNN_RESULT_FILE if fv.probe == 'knn' else RESULT_FILE)
  return None


def main(argv=None):
  """Parses ``argv`` (argv[0]: the program; default sys.argv) afresh and probes.

  Returns:
    int exit status: 0 (also after --help), 1 the probe failed, 2 a bad command line.
  """
  argv = list(sys.argv if argv is None else argv)
  fv, status = scripts.start(PROGRAM, __doc__, define_flags, argv)
  if fv is None:
    return status
  output = output_path(fv)
  try:
    from mi_tf import evaluation  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
    from mi_tf import files  # pylint: disable=g-import-not-at-top
    from mi_tf import jsonl  # pylint: disable=g-import-not-at-top
    # --also_knn: the k-NN result of --probe=knn with the same flags, on the same features.
    result, *knn = evaluation.probe_saved_model_protocols(
        saved_model=fv.saved_model, dataset=fv.dataset, data_dir=fv.data_dir,
        noise_std=fv.noise_std, train_split=fv.train_split, test_split=fv.test_split,
        seed=fv.seed, probes=((fv.probe, fv.also_fast),) + (('knn', False),) * fv.also_knn,
        knn_k=fv.knn_k, knn_temperature=fv.knn_temperature)
    text = jsonl.dumps_strict(result, indent=2, sort_keys=True)  # Strict JSON: no bare NaN.
    if knn:  # Its file first: the runner takes the linear result file for a finished run.
      knn_output = os.path.join(os.path.dirname(output), KNN_RESULT_FILE)
      files.write_atomic(knn_output,
                         jsonl.dumps_strict(knn[0], indent=2, sort_keys=True) + '\n')
    if output:
      files.write_atomic(output, text + '\n')
  except (Exception, KeyboardInterrupt) as e:  # pylint: disable=broad-except
    if not (scripts.is_run_error(e) or isinstance(e, KeyboardInterrupt)):
      raise  # A bug: its traceback.
    return scripts.failure(e, fv.verbose)
  print(text)
  fast = (f'; converged (fast) probe {100 * result["fast_test_accuracy"]:.2f}%'
          if 'fast_test_accuracy' in result else '')
  where = f', written to {output}' if output else ' (not written: --output writes it)'
  train = ('not scored' if result['train_accuracy'] is None
           else f'{100 * result["train_accuracy"]:.2f}%')
  if result.get('probe') == 'knn' and result['train_accuracy'] is not None:
    train += f' leave-one-out on {result["train_accuracy_examples"]}'
  print(f'test accuracy {100 * result["test_accuracy"]:.2f}% (train {train}){fast}{where}')
  if knn:
    print(f'k-NN probe test accuracy {100 * knn[0]["test_accuracy"]:.2f}%, written to '
          f'{knn_output}')
  return 0


def run():
  """The console command (``mi-tf-probe``, ``python -m mi_tf.scripts.probe``): like
  absl.app.run, parses sys.argv and exits with main's status."""
  sys.exit(main(sys.argv))


if __name__ == '__main__':
  run()
