"""Shared test setup: real MNIST and CIFAR-10 from the offline TFDS copies (TFDS_DATA_DIR),
TF log noise off, gin cleared per test."""

import os
import sys
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
_SHARED_TFDS = REPO.parent / 'shared' / 'data' / 'tensorflow_datasets'
if 'TFDS_DATA_DIR' not in os.environ and _SHARED_TFDS.is_dir():
  os.environ['TFDS_DATA_DIR'] = str(_SHARED_TFDS)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import gin  # noqa: E402
import pytest  # noqa: E402

GIN_DIR = REPO / 'gin'

# Bindings that shrink any experiment to a few seconds on a real subset (MNIST or CIFAR-10).
TINY_BINDINGS = (
    'train.num_steps = 4',
    'train.batch_size = 16',
    'train.eval_every = 2',
    'train.log_every = 2',
    'train.checkpoint_every = 2',
    "ImageHalves.train_split = 'train[:512]'",
    "ImageHalves.probe_train_split = 'train[:512]'",
    "ImageHalves.test_split = 'test[:256]'",
    'MIMaximization.eval_batch_size = 16',
    'MIMaximization.train_estimate_examples = 256',
    'GaussianToy.eval_batches = 4',
    # The converged probe of step 0 and the last step: a bounded solve on these tiny splits.
    'converged_probe.max_iterations = 100',
    # Sec. 3.1: a 2-coupling RealNVP (tests/test_realnvp.py covers the 30-coupling
    # one) and a 3-step head warm-up keep the RealNVP and adversarial files to seconds.
    'RealNVP.num_couplings = 2',
    'AdversarialInvertible.warmup_steps = 3',
)


def dir_snapshot(root):
  """{relative path: (mtime_ns, bytes)} of every file under ``root``: equal snapshots mean that
  nothing was written there."""
  out = {}
  for folder, _, names in os.walk(root):
    for name in names:
      path = os.path.join(folder, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, root)] = (os.stat(path).st_mtime_ns, f.read())
  return out


def checkpoint_weights(model_dir):
  """{variable name: value} of the newest checkpoint of a run (the checkpoint's bookkeeping
  entries left out), to compare runs bit for bit."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(
      os.path.join(model_dir, 'checkpoints')))
  return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
          if not n.startswith(('_CHECKPOINTABLE_OBJECT_GRAPH', 'save_counter'))}


def metrics_without_timing(model_dir):
  """{(step, split, metric): value} of a run's metrics.jsonl without its timings (which
  differ between runs); a duplicated record fails the test."""
  from mi_tf import metrics_log  # pylint: disable=g-import-not-at-top
  out = {}
  for r in metrics_log.read(model_dir):
    if any(t in r['metric'] for t in ('seconds', 'steps_per_second')):
      continue
    key = (r['step'], r['split'], r['metric'])
    assert key not in out, f'duplicated metric {key}'
    out[key] = r['value']
  return out


def experiment_gin_files():
  """Every runnable experiment file (gin/common/ holds include-only fragments)."""
  return sorted(p for p in GIN_DIR.glob('*.gin'))


# The experiment files the smoke test trains (tests/test_gin_files.py; every file is parsed and
# its task built there): one file per choice a file name makes (task, section and dataset,
# critic, encoder, estimator, target, objective, batch size, mining, sampling), each choice at
# least once, the cheaper MLP files where a choice allows. Files that differ from one of these
# only in bindings of the same code (another learning rate, batch size or target) are not
# trained again; tests/test_cifar10.py trains the CIFAR-10 bilinear and ConvNet files on real
# slices. test_gin_files checks that this list covers every choice of gin/.
SMOKE_FILES = (
    'baseline_supervised_mlp',
    'sec3_1_realnvp', 'sec3_1_adversarial', 'sec3_1_resmlp_nwj',
    'sec3_2_critics_bilinear_infonce', 'sec3_2_critics_separable_nwj',
    'sec3_2_critics_concat_infonce',
    'sec3_3_encoders_convnet_nwj_t2', 'sec3_3_encoders_mlp_infonce_t4',
    'cifar10_sec3_2_critics_separable_infonce', 'cifar10_sec3_2_critics_concat_nwj',
    'cifar10_sec3_3_encoders_mlp_nwj_t4',
    'sec3_2_critics_bilinear_dv', 'sec3_2_critics_bilinear_js', 'sec3_2_critics_bilinear_smile',
    'sec3_2_critics_bilinear_alpha', 'sec3_3_encoders_mlp_tuba_t4',
    'metric_kpair_shared_mlp', 'metric_kpair_separate_mlp', 'metric_triplet_mlp',
    'negatives_b16', 'negatives_hard_k128', 'negatives_random_k128',
    'sec4_iid_nwj', 'sec4_noniid',
)


def smoke_gin_files():
  """The gin files of SMOKE_FILES (paths, in gin/'s order)."""
  return [p for p in experiment_gin_files() if p.stem in SMOKE_FILES]


@pytest.fixture(autouse=True)
def _clear_gin():
  gin.clear_config()
  yield
  gin.clear_config()


_EXIT_STATUS = {}


def pytest_sessionfinish(session, exitstatus):  # pylint: disable=unused-argument
  _EXIT_STATUS['code'] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):  # pylint: disable=unused-argument
  """Leaves without interpreter teardown once pytest has printed its summary.

  TF 2.21 can deadlock at interpreter shutdown while destroying a leftover tf.data iterator
  (seen here: the process waited forever in UnboundedThreadPool::~LogicalThreadWrapper after
  printing "195 passed"), which would hang CI. Everything is reported and written by now.
  """
  if os.environ.get('PYTEST_XDIST_WORKER'):
    # An xdist worker reports to the controller over a channel that os._exit would cut; a
    # worker that hangs at shutdown is killed by xdist's teardown (10 s) instead.
    return
  if 'code' in _EXIT_STATUS:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS['code'])  # pylint: disable=protected-access
