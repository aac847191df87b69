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


def smoke_gin_files():
  """The experiment files the smoke test trains: every file of the paper's MNIST and App. G
  studies, and of the beyond-the-paper products one file per new estimator (its bilinear
  critic run, and the MLP t = 4 run of an estimator that is no mean of rows) and per new
  objective, batch size end and mining; every file is parsed and its task built in
  tests/test_gin_files.py."""
  from mi_tf import study  # pylint: disable=g-import-not-at-top
  names = set(study.MNIST_SETTINGS) | set(study.CIFAR10_SETTINGS)
  names |= {study.critic_setting('bilinear', e) for e in study.FAMILY_ESTIMATORS}
  names |= {study.encoder_setting('mlp', 'smile', 4), study.encoder_setting('mlp', 'tuba', 4)}
  names |= {study.metric_setting(o, 'mlp') for o in study.METRIC_OBJECTIVES}
  names |= {study.negatives_setting(16), study.negatives_setting(512)}
  names |= {study.mining_setting(m) for m in study.MINING}
  return [p for p in experiment_gin_files() if p.stem in names]


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
