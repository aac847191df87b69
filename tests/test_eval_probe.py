"""evaluation.probe_saved_model: dataset and noise from the export's metadata, the probe's
parameters and provenance in its result, progress in the log.

One tiny residual-MLP run (gin/sec3_1_resmlp.gin: coupled noise 0.05, 2 steps) is trained per
module; its export is what eval_probe.py probes.
"""

import json
import logging

import pytest

from conftest import GIN_DIR, TINY_BINDINGS
from mi_tf import evaluation
from mi_tf import export
from mi_tf import launch

SPLITS = {'train_split': 'train[:2000]', 'test_split': 'test[:500]'}


@pytest.fixture(scope='module')
def resmlp_export(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp('resmlp') / 'run'
  launch.train_with_gin(str(model_dir), [str(GIN_DIR / 'sec3_1_resmlp.gin')], TINY_BINDINGS + (
      'train.num_steps = 2', 'MIMaximization.condition_number_examples = 0',
      'converged_probe.max_iterations = 20'))
  return str(model_dir / 'export')


@pytest.fixture(scope='module')
def default_result(resmlp_export):
  return evaluation.probe_saved_model(resmlp_export, **SPLITS)


def test_noise_and_dataset_default_to_the_exports_metadata(resmlp_export, default_result):
  # What the run wrote: the Sec. 3.1 file trains on halves with coupled noise 0.05.
  assert export.load_metadata(resmlp_export)['noise_std'] == 0.05
  r = default_result
  assert r['noise_std'] == 0.05 and r['noise_std_source'] == 'metadata'
  assert r['dataset'] == 'mnist' and r['dataset_source'] == 'metadata'
  assert r['export_step'] == 2 and r['export_seed'] == 0
  assert r['export_metadata']['encoder'] == 'ResidualMLP'
  assert (r['train_size'], r['test_size'], r['feature_dim']) == (2000, 500, 392)
  # The probe's protocol and parameters (mi_tf/probe.py's paper protocol), and what it ran on.
  assert (r['protocol'], r['C'], r['tol'], r['max_iter'], r['solver']) == (
      'paper', 10.0, 0.1, 100, 'saga')
  assert (r['seed'], r['train_split'], r['test_split']) == (0, 'train[:2000]', 'test[:500]')
  assert 'probe' not in r and 'data_dir' not in r  # The paper's results keep their keys.
  assert 0.5 < r['test_accuracy'] <= 1.0
  json.dumps(r)  # probe_result.json.
  # The default IS the noisy probe: giving the metadata's value changes nothing.
  same = evaluation.probe_saved_model(resmlp_export, noise_std=0.05, dataset='mnist', **SPLITS)
  assert same['noise_std_source'] == 'flag' and same['dataset_source'] == 'flag'
  assert (same['train_accuracy'], same['test_accuracy']) == (r['train_accuracy'],
                                                             r['test_accuracy'])


def test_a_value_other_than_the_metadatas_warns_and_is_used(resmlp_export, default_result,
                                                             caplog):
  with caplog.at_level(logging.WARNING, logger='mi_tf.evaluation'):
    r = evaluation.probe_saved_model(resmlp_export, noise_std=0.0, **SPLITS)
  warnings = [rec for rec in caplog.records
              if rec.name == 'mi_tf.evaluation' and rec.levelno == logging.WARNING]
  assert len(warnings) == 1
  assert 'noise_std=0.0 given' in warnings[0].getMessage()
  assert 'noise_std=0.05' in warnings[0].getMessage()
  assert r['noise_std'] == 0.0 and r['noise_std_source'] == 'flag'
  # Clean halves give other features, so another fit on the same 2,000 examples.
  assert r['train_accuracy'] != default_result['train_accuracy']


def test_progress_is_logged(resmlp_export, caplog):
  with caplog.at_level(logging.INFO, logger='mi_tf.evaluation'):
    evaluation.probe_saved_model(resmlp_export, probe='fast', **SPLITS)
  text = '\n'.join(rec.getMessage() for rec in caplog.records if rec.name == 'mi_tf.evaluation')
  assert 'noise_std 0.05, from the metadata' in text
  assert 'Encoding 2500 examples' in text
  assert 'Fitting the fast probe (lbfgs_armijo, C=10, tol=0.0001, max_iter=3000)' in text
  assert 'Done in' in text


def test_pixels_and_exports_without_metadata_use_mnist_and_no_noise(tmp_path, resmlp_export):
  pixels = evaluation.probe_saved_model(None, train_split='train[:500]', test_split='test[:200]')
  assert (pixels['dataset'], pixels['dataset_source']) == ('mnist', 'default')
  assert (pixels['noise_std'], pixels['noise_std_source']) == (0.0, 'default')
  assert pixels['source'] == 'pixels' and 'export_metadata' not in pixels
  # An export from before the metadata file: the same defaults, and empty provenance.
  import shutil  # pylint: disable=g-import-not-at-top
  old = tmp_path / 'export'
  shutil.copytree(resmlp_export, old)
  (old / export.METADATA_FILE).unlink()
  assert export.load_metadata(str(old)) == {}
  r = evaluation.probe_saved_model(str(old), probe='converged', also_fast=True,
                                   train_split='train[:500]', test_split='test[:200]')
  assert (r['noise_std'], r['noise_std_source'], r['dataset_source']) == (0.0, 'default',
                                                                         'default')
  assert r['export_metadata'] == {} and r['export_step'] is None and r['export_seed'] is None
  assert (r['protocol'], r['probe'], r['tol'], r['solver']) == ('converged', 'converged', 1e-6,
                                                                'lbfgs_armijo')
  assert r['fast_tol'] == 1e-4 and 'fast_test_accuracy' in r


def test_gin_bindings_of_the_probe_are_reported():
  import gin  # pylint: disable=g-import-not-at-top
  gin.bind_parameter('linear_probe.C', 0.5)
  r = evaluation.probe_saved_model(None, train_split='train[:500]', test_split='test[:200]')
  assert r['C'] == 0.5 and r['tol'] == 0.1


def test_unreadable_metadata_is_one_clear_error(tmp_path):
  (tmp_path / export.METADATA_FILE).write_text('{"step": 3')
  with pytest.raises(export.ExportError, match='is not valid JSON'):
    export.load_metadata(str(tmp_path))
  (tmp_path / export.METADATA_FILE).write_text('[1, 2]')
  with pytest.raises(export.ExportError, match='not an object'):
    export.load_metadata(str(tmp_path))
