"""A run is portable across data locations: where the data lives (ImageHalves.data_dir,
--data_dir) is not part of a run's identity, what the data is (dataset, version, split strings
and sizes, recorded in run_info.json) is. A run stopped with its data in A, moved, resumes
with the same data in B; other data is refused with one message, and nothing is written."""

import json
import os
import shutil
import signal

import pytest

from conftest import GIN_DIR, TINY_BINDINGS, metrics_without_timing, dir_snapshot
from mi_tf import launch
from mi_tf import run_dir as run_dir_lib
from mi_tf.tasks import mi_maximization

GIN = [str(GIN_DIR / 'sec3_2_critics_bilinear_infonce.gin')]
MNIST = os.path.join(os.environ.get('TFDS_DATA_DIR', ''), 'mnist', '3.0.1')


def _train(model_dir, data_dir, num_steps):
  return launch.train_with_gin(model_dir, GIN, list(TINY_BINDINGS) + [
      f'train.num_steps = {num_steps}', f'ImageHalves.data_dir = {str(data_dir)!r}'])


_snapshot = dir_snapshot


def _run_info(model_dir):
  with open(os.path.join(model_dir, run_dir_lib.RUN_INFO_FILE)) as f:
    return json.load(f)


@pytest.fixture(autouse=True)
def _mnist_on_disk():
  if not os.path.isdir(MNIST):
    pytest.skip(f'no prepared MNIST in {MNIST}')


def test_a_stopped_run_moved_resumes_with_its_data_elsewhere_and_other_data_is_refused(
    tmp_path, monkeypatch):
  data_a = tmp_path / 'machine_a' / 'tfds'
  shutil.copytree(MNIST, data_a / 'mnist' / '3.0.1')
  first = str(tmp_path / 'machine_a' / 'run')
  evaluate = mi_maximization.MIMaximization.evaluate

  def evaluate_then_sigterm(self, step, final=False):  # A preemption notice at step 2.
    values = evaluate(self, step, final)
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)
    return values

  monkeypatch.setattr(mi_maximization.MIMaximization, 'evaluate', evaluate_then_sigterm)
  with pytest.raises(SystemExit):
    _train(first, data_a, 6)
  monkeypatch.undo()
  assert not os.path.exists(os.path.join(first, run_dir_lib.FINAL_METRICS_FILE))
  assert not os.path.exists(os.path.join(first, run_dir_lib.TRAIN_LEASE_FILE))
  data = _run_info(first)[run_dir_lib.DATA_KEY]
  assert data == {'dataset': 'mnist', 'version': '3.0.1', 'splits': {
      'train_split': {'split': 'train[:512]', 'num_examples': 512},
      'probe_train_split': {'split': 'train[:512]', 'num_examples': 512},
      'test_split': {'split': 'test[:256]', 'num_examples': 256}}}
  with open(os.path.join(first, run_dir_lib.CONFIG_FILE)) as f:
    config = f.read()
  assert str(data_a) in config

  # A new machine: the run and the data moved (machine A's copy is gone).
  run = str(tmp_path / 'machine_b' / 'run')
  data_b = tmp_path / 'machine_b' / 'tfds'
  shutil.move(first, run)
  shutil.move(str(data_a), str(data_b))
  assert _train(run, data_b, 6)['step'] == 6
  sessions = _run_info(run)['sessions']
  assert [s['start_step'] for s in sessions] == [0, 4]  # Resumed, not restarted.
  with open(os.path.join(run, run_dir_lib.CONFIG_FILE)) as f:
    assert f.read() == config  # Not rewritten.
  steps = {step for step, split, _ in metrics_without_timing(run) if split == 'eval'}
  assert steps == {0, 2, 4, 6}

  # A copy of the data without the test split: refused before anything is written.
  data_c = tmp_path / 'machine_c' / 'tfds'
  (data_c / 'mnist' / '3.0.1').mkdir(parents=True)
  shutil.copy(data_b / 'mnist' / '3.0.1' / 'features.json', data_c / 'mnist' / '3.0.1')
  with open(data_b / 'mnist' / '3.0.1' / 'dataset_info.json') as f:
    info = json.load(f)
  info['splits'] = [s for s in info['splits'] if s['name'] != 'test']
  with open(data_c / 'mnist' / '3.0.1' / 'dataset_info.json', 'w') as f:
    json.dump(info, f)
  before = _snapshot(run)
  with pytest.raises(ValueError, match="has no split 'test'"):
    _train(run, data_c, 8)
  assert _snapshot(run) == before

  # The run began on another version of the dataset: refused, with what differs.
  recorded = _run_info(run)
  recorded[run_dir_lib.DATA_KEY]['version'] = '3.0.0'
  with open(os.path.join(run, run_dir_lib.RUN_INFO_FILE), 'w') as f:
    json.dump(recorded, f)
  before = _snapshot(run)
  with pytest.raises(run_dir_lib.RunDirError, match="other data.*version: '3.0.0' -> '3.0.1'"):
    _train(run, data_b, 8)
  assert _snapshot(run) == before


def test_the_config_comparison_ignores_only_where_the_data_lives(tmp_path):
  """RunDir alone: data_dir (bound or not, on one line or continued over several) is not
  compared; any other binding is."""
  model_dir = str(tmp_path / 'run')
  base = 'ImageHalves.dataset = \'mnist\'\ntrain.num_steps = 4\ntrain.seed = 0\n'
  long_dir = ("ImageHalves.data_dir = \\\n    ('/a long path/with spaces/'\n"
              "     'tensorflow_datasets')\n")
  run = run_dir_lib.RunDir(model_dir)
  assert run.start("# Parameters for ImageHalves:\nImageHalves.data_dir = '/a'\n" + base,
                   4) == 'new'
  run.close()
  for config in (base, long_dir + base, "scope/ImageHalves.data_dir = '/b'\n" + base):
    run = run_dir_lib.RunDir(model_dir)
    assert run.start(config, 4) == 'resumed'
    run.close()
  with open(os.path.join(model_dir, run_dir_lib.CONFIG_FILE)) as f:
    assert "'/a'" in f.read()  # The first config.gin stays.
  with pytest.raises(run_dir_lib.RunDirError, match=r"\+train.seed = 1"):
    run_dir_lib.RunDir(model_dir).start(base.replace('seed = 0', 'seed = 1'), 4)
  run = run_dir_lib.RunDir(model_dir)
  assert run.start(long_dir + base.replace('num_steps = 4', 'num_steps = 8'), 8) == 'continued'
  run.close()
