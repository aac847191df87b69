"""App. G on CIFAR-10: the real training and probe code paths on random mock CIFAR-10.

There is no offline copy of CIFAR-10 here; ``tfds_mock.mock_dataset`` makes TFDS serve random
examples with CIFAR-10's real features (uint8 32x32x3 images, 10 labels) through the project's
unchanged loading code. A user with network runs the same gin files on the real dataset.
"""

import json

import pytest
import tensorflow_datasets as tfds

from conftest import GIN_DIR, TINY_BINDINGS
from mi_tf import data as data_lib
from mi_tf import evaluation
from mi_tf import metrics_log
from mi_tf import launch
import tfds_mock


def test_cifar10_halves_are_16x32x3():
  with tfds_mock.mock_dataset('cifar10', num_examples=64):
    halves = data_lib.ImageHalves(dataset='cifar10')
    assert halves.input_shape == (16, 32, 3)
    x1, x2, labels = halves.eval_split('test')
    assert x1.shape == (64, 16, 32, 3) and x2.shape == (64, 16, 32, 3)
    assert 0.0 <= x1.min() and x1.max() <= 1.0 and labels.max() < 10


@pytest.mark.parametrize('gin_name', ['cifar10_sec3_3_encoders_convnet_infonce_t2.gin',
                                      'cifar10_sec3_2_critics_bilinear_nwj.gin'])
def test_train_and_probe_on_mock_cifar10(gin_name, tmp_path):
  model_dir = tmp_path / 'run'
  with tfds_mock.mock_dataset('cifar10', num_examples=512):
    final = launch.train_with_gin(str(model_dir), [str(GIN_DIR / gin_name)], TINY_BINDINGS)
    operative = (model_dir / 'operative_config.gin').read_text()
    # App. G's settings reached the run (the tiny bindings only shorten it).
    assert "ImageHalves.dataset = 'cifar10'" in operative
    assert 'MIMaximization.learning_rate = 1e-05' in operative
    assert final['step'] == 4
    assert 0.0 <= final['probe/test_accuracy'] <= 1.0
    meta = json.loads((model_dir / 'export' / 'mi_tf_metadata.json').read_text())
    assert meta['input_shape'] == [16, 32, 3] and meta['dataset'] == 'cifar10'
    records = metrics_log.read(str(model_dir))
    assert {r['step'] for r in records if r['split'] == 'eval'} == {0, 2, 4}

    # eval_probe.py's code path on the exported encoder, and the pixel baseline.
    result = evaluation.probe_saved_model(str(model_dir / 'export'), dataset='cifar10',
                                          train_split='train[:512]', test_split='test[:256]')
    assert result['feature_dim'] == 100 and 0.0 <= result['test_accuracy'] <= 1.0
    pixels = evaluation.probe_saved_model(None, dataset='cifar10', train_split='train[:512]',
                                          test_split='test[:256]')
    assert pixels['feature_dim'] == 16 * 32 * 3
  # The caches hold no mock data after the block.
  assert data_lib.load_images.cache_info().currsize == 0


def test_gin_files_cover_app_g():
  for stem in ('sec3_2_critics_bilinear_infonce', 'sec3_2_critics_separable_nwj',
               'sec3_2_critics_concat_infonce', 'sec3_3_encoders_mlp_nwj_t4',
               'sec3_3_encoders_convnet_infonce_t2'):
    assert (GIN_DIR / f'cifar10_{stem}.gin').is_file(), stem
  assert len(list(GIN_DIR.glob('cifar10_*.gin'))) == 14


def test_missing_cifar10_fails_fast_with_a_clear_message(tmp_path):
  data_lib.load_images.cache_clear()
  with pytest.raises(data_lib.DataNotFoundError, match='cifar10'):
    data_lib.check_available('cifar10', 'train', data_dir=str(tmp_path))


def test_with_network_and_no_data_dir_the_real_dataset_is_prepared(tmp_path, monkeypatch):
  """The same command downloads and prepares CIFAR-10 where the network answers."""
  monkeypatch.delenv('TFDS_DATA_DIR', raising=False)
  monkeypatch.setenv('HOME', str(tmp_path))  # TFDS's default ~/tensorflow_datasets is empty.
  monkeypatch.setattr(tfds.core.constants, 'DATA_DIR', str(tmp_path / 'tensorflow_datasets'))
  monkeypatch.setattr(data_lib, '_network_reachable', lambda timeout_s=3.0: True)
  calls = []

  class _Stop(Exception):
    pass

  def fake_download_and_prepare(self, *args, **kwargs):
    calls.append(self.name)
    raise _Stop()

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare',
                      fake_download_and_prepare)
  with pytest.raises(_Stop):
    data_lib.check_available('cifar10', 'train')
  assert calls == ['cifar10']
