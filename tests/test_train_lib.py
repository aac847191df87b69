"""train -> export -> eval_probe end to end, resume, and clear errors on bad input."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from conftest import GIN_DIR, REPO, TINY_BINDINGS
from mi_tf import data
from mi_tf import evaluation
from mi_tf import export
from mi_tf import metrics_log
from mi_tf import train_lib
from mi_tf import launch

GIN = str(GIN_DIR / 'sec3_2_critics_bilinear_infonce.gin')
SPLITS = ("ImageHalves.train_split = 'train[:512]'",
          "ImageHalves.probe_train_split = 'train[:2000]'",
          "ImageHalves.test_split = 'test[:1000]'")


def _dir_snapshot(path):
  snap = {}
  for root, _, files in os.walk(path):
    for f in files:
      p = os.path.join(root, f)
      snap[p] = (os.path.getsize(p), os.path.getmtime(p))
  return snap


def test_train_export_and_eval_probe_agree(tmp_path):
  model_dir = str(tmp_path / 'run')
  final = launch.train_with_gin(model_dir, [GIN], TINY_BINDINGS + SPLITS + (
      'train.num_steps = 30', 'train.eval_every = 30', 'train.batch_size = 64'))
  result = evaluation.probe_saved_model(os.path.join(model_dir, 'export'),
                                        train_split='train[:2000]', test_split='test[:1000]')
  # Same features, same protocol, same seed: the stand-alone probe reproduces training's.
  assert result['test_accuracy'] == pytest.approx(final['probe/test_accuracy'], abs=0.005)
  assert result['feature_dim'] == 100 and result['train_size'] == 2000
  # The converged ('fast') probe is logged at step 0 and at the final step only.
  records = metrics_log.read(model_dir)
  fast = {r['step']: r['value'] for r in records if r['metric'] == 'probe_fast/test_accuracy'}
  assert sorted(fast) == [0, 30] and fast[30] == final['probe_fast/test_accuracy']
  assert 0.5 < fast[30] <= 1.0
  pixels = evaluation.probe_saved_model(None, train_split='train[:2000]',
                                        test_split='test[:1000]')
  assert pixels['feature_dim'] == 392 and 0.6 < pixels['test_accuracy'] < 0.95


@pytest.mark.e2e  # Several processes: the e2e tier (pytest.ini).
def test_eval_probe_script_writes_json(tmp_path):
  out = tmp_path / 'pixels.json'
  proc = subprocess.run(
      [sys.executable, str(REPO / 'eval_probe.py'), '--pixels', '--train_split=train[:1000]',
       '--test_split=test[:500]', f'--output={out}'], capture_output=True, text=True,
      timeout=300)
  assert proc.returncode == 0, proc.stderr
  result = json.loads(out.read_text())
  assert result['source'] == 'pixels' and result['test_size'] == 500
  assert 'fast_test_accuracy' not in result
  proc = subprocess.run(
      [sys.executable, str(REPO / 'eval_probe.py'), '--pixels', '--train_split=train[:1000]',
       '--test_split=test[:500]', '--also_fast', f'--output={out}'], capture_output=True,
      text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  both = json.loads(out.read_text())
  assert both['test_accuracy'] == result['test_accuracy']  # The paper's probe, unchanged.
  assert 0.6 < both['fast_test_accuracy'] < 0.95 and both['fast_train_accuracy'] > 0.6


def test_resume_continues_the_step_count_and_metrics_are_not_duplicated(tmp_path):
  model_dir = str(tmp_path / 'run')
  base = TINY_BINDINGS + SPLITS
  launch.train_with_gin(model_dir, [GIN], base)  # 4 steps, checkpoints at 2 and 4.
  # Pretend the run was stopped at step 2: drop the newest checkpoint and the final metrics.
  os.remove(os.path.join(model_dir, 'final_metrics.json'))
  manager_dir = os.path.join(model_dir, 'checkpoints')
  for f in tf.io.gfile.glob(os.path.join(manager_dir, 'ckpt-4*')):
    tf.io.gfile.remove(f)
  with open(os.path.join(manager_dir, 'checkpoint'), 'w') as f:
    f.write('model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-2"\n')
  final = launch.train_with_gin(model_dir, [GIN], base)
  assert final['step'] == 4
  with open(os.path.join(model_dir, 'run_info.json')) as f:
    sessions = json.load(f)['sessions']
  assert [s['start_step'] for s in sessions] == [0, 2]
  records = metrics_log.read(model_dir)
  keys = [(r['step'], r['split'], r['metric']) for r in records]
  assert len(keys) == len(set(keys)), 'duplicated metrics after resume'
  assert {r['step'] for r in records if r['split'] == 'eval'} == {0, 2, 4}


def test_unknown_gin_binding_fails_before_writing(tmp_path):
  model_dir = tmp_path / 'run'
  with pytest.raises(ValueError, match='num_stepz'):
    launch.train_with_gin(str(model_dir), [GIN], ['train.num_stepz = 3'])
  assert not model_dir.exists()
  with pytest.raises(FileNotFoundError, match='nope.gin'):
    launch.train_with_gin(str(model_dir), ['gin/nope.gin'])


def test_missing_data_fails_fast_and_writes_nothing(tmp_path):
  model_dir = tmp_path / 'run'
  with pytest.raises(data.DataNotFoundError, match='No prepared TFDS data'):
    launch.train_with_gin(str(model_dir), [GIN],
                             [f"ImageHalves.data_dir = '{tmp_path / 'empty'}'"])
  assert not model_dir.exists()


def test_refuses_to_resume_a_run_with_another_config(tmp_path):
  model_dir = str(tmp_path / 'run')
  launch.train_with_gin(model_dir, [GIN], TINY_BINDINGS + SPLITS)
  before = _dir_snapshot(model_dir)
  with pytest.raises(train_lib.RunDirError, match='different gin config'):
    launch.train_with_gin(model_dir, [GIN], TINY_BINDINGS + SPLITS + (
        "MIMaximization.estimator = 'nwj'",))
  assert _dir_snapshot(model_dir) == before


def test_eval_probe_on_a_directory_that_is_not_a_saved_model(tmp_path):
  with pytest.raises(export.ExportError, match='not a SavedModel'):
    evaluation.probe_saved_model(str(tmp_path), train_split='train[:100]',
                                 test_split='test[:100]')
  proc = subprocess.run([sys.executable, str(REPO / 'eval_probe.py'),
                         f'--saved_model={tmp_path}'], capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 1 and 'not a SavedModel' in proc.stderr


def test_train_script_reports_bad_input_in_one_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, str(REPO / 'train.py'), f'--gin_file={GIN}',
       f'--model_dir={tmp_path / "run"}', '--gin_bindings=train.batch_size = 0'],
      capture_output=True, text=True, timeout=300, cwd=str(REPO))
  assert proc.returncode == 1
  assert 'batch_size must be a positive integer' in proc.stderr
  assert 'Traceback' not in proc.stderr


@pytest.mark.parametrize('binding,message', [
    ("ImageHalves.dataset = 'mnistt'", 'Unknown TFDS dataset'),
    ("ImageHalves.test_split = 'validation'", "no split 'validation'"),
])
def test_unknown_dataset_or_split_fails_before_writing(tmp_path, binding, message):
  model_dir = tmp_path / 'run'
  with pytest.raises(ValueError, match=message):
    launch.train_with_gin(str(model_dir), [GIN], [binding])
  assert not model_dir.exists()


def test_eval_probe_on_a_saved_model_with_the_wrong_input_shape(tmp_path):
  import keras  # pylint: disable=g-import-not-at-top
  model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(4)])
  model.build((None, 16, 32, 3))  # CIFAR-10 halves, not MNIST's 14x28x1.
  export.export_encoder(model, str(tmp_path / 'export'), (16, 32, 3))
  with pytest.raises(export.ExportError, match=r'expects inputs of shape \[16, 32, 3\]'):
    evaluation.probe_saved_model(str(tmp_path / 'export'), train_split='train[:100]',
                                 test_split='test[:100]')


def test_jit_compile_trains_the_same_model(tmp_path):
  """train.jit_compile (opt-in XLA) changes the speed, not the training: the same 20
  steps give the same losses and the same eval estimates as the default graph, up to float32
  rounding (XLA fuses and reorders the arithmetic)."""
  def run(name, jit):
    model_dir = str(tmp_path / name)
    launch.train_with_gin(model_dir, [GIN], TINY_BINDINGS + SPLITS + (
        'train.num_steps = 20', 'train.log_every = 5', 'train.eval_every = 20',
        'train.checkpoint_every = 20', f'train.jit_compile = {jit}'))
    return {(r['step'], r['split'], r['metric']): r['value']
            for r in metrics_log.read(model_dir)
            if r['metric'] in ('loss', 'I_EST', 'I_NCE/test', 'I_NWJ/test')}

  plain, xla = run('plain', False), run('xla', True)
  assert plain.keys() == xla.keys() and len(plain) >= 6
  losses = [k for k in plain if k[2] == 'loss']
  assert len({plain[k] for k in losses}) > 1  # Training moved the loss.
  for key, value in plain.items():
    assert xla[key] == pytest.approx(value, rel=1e-3, abs=1e-3), key


def test_export_every_eval_keeps_every_evaluations_export_beside_the_final_one(tmp_path):
  model_dir = tmp_path / 'run'
  launch.train_with_gin(str(model_dir), [GIN], TINY_BINDINGS + SPLITS + (
      'train.export_every_eval = True',))
  export_dir = model_dir / 'export'
  assert (export_dir / 'saved_model.pb').is_file()
  for step in (0, 2, 4):
    assert (export_dir / f'step_{step}' / 'saved_model.pb').is_file(), step
    meta = json.loads((export_dir / f'step_{step}' / 'mi_tf_metadata.json').read_text())
    assert meta['step'] == step
