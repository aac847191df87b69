"""MNIST from TFDS -> halves X1 (top) and X2 (bottom), coupled noise, training stream."""

import time

import numpy as np
import pytest

from mi_tf import data


def test_eval_halves_shapes_dtypes_and_pixels():
  x1, x2, labels = data.eval_halves('mnist', 'test[:64]')
  images, _ = data.load_images('mnist', 'test[:64]')
  assert x1.shape == x2.shape == (64, 14, 28, 1)
  assert x1.dtype == x2.dtype == np.float32 and labels.dtype == np.int64
  assert 0.0 <= x1.min() and x1.max() <= 1.0 and x1.max() > 0.5
  flat = images.reshape(64, 784) / 255.0
  # The paper's X1 is the first 392 of the 784 flattened pixels, X2 the last 392.
  np.testing.assert_allclose(x1.reshape(64, -1), flat[:, :392], atol=1e-7)
  np.testing.assert_allclose(x2.reshape(64, -1), flat[:, 392:], atol=1e-7)


def test_coupled_noise_is_the_same_vector_in_both_halves():
  clean1, clean2, _ = data.eval_halves('mnist', 'test[:64]')
  x1, x2, _ = data.eval_halves('mnist', 'test[:64]', noise_std=0.05)
  n1, n2 = x1 - clean1, x2 - clean2
  np.testing.assert_allclose(n1, n2, atol=1e-6)
  assert abs(n1.std() - 0.05) < 0.002
  # And in the training stream.
  ds = data.train_dataset('mnist', 'train[:256]', batch_size=32, seed=3, noise_std=0.05)
  batch = next(iter(ds))
  plain = next(iter(data.train_dataset('mnist', 'train[:256]', batch_size=32, seed=3)))
  np.testing.assert_allclose((batch['x1'] - plain['x1']).numpy(),
                             (batch['x2'] - plain['x2']).numpy(), atol=1e-6)
  assert batch['x1'].shape == (32, 14, 28, 1)


def test_training_stream_is_a_function_of_the_step():
  def labels(start_step, n):
    ds = data.train_dataset('mnist', 'train[:200]', batch_size=16, seed=5,
                            start_step=start_step)
    return np.stack([b['label'].numpy() for b in ds.take(n)])
  full = labels(0, 30)  # 30 x 16 = 480 > 200 examples: crosses two epoch boundaries.
  np.testing.assert_array_equal(labels(17, 13), full[17:])
  assert not np.array_equal(full[0], labels(0, 1)[0] * 0 + full[1])
  # Each epoch is a permutation of the split.
  stream = np.array([i for _, i in data.index_stream(200, seed=5).take(400).as_numpy_iterator()])
  assert sorted(stream[:200]) == list(range(200)) and sorted(stream[200:]) == list(range(200))
  assert not np.array_equal(stream[:200], stream[200:])


def test_per_replica_batches_are_slices_of_the_global_batch():
  class Ctx:  # The fields of tf.distribute.InputContext that the pipeline reads.
    num_replicas_in_sync = 2
    num_input_pipelines = 1
    input_pipeline_id = 0
  one = next(iter(data.train_dataset('mnist', 'train[:256]', batch_size=32, seed=1)))
  two = list(data.train_dataset('mnist', 'train[:256]', batch_size=32, seed=1,
                                input_context=Ctx()).take(2))
  np.testing.assert_array_equal(one['label'].numpy(),
                                np.concatenate([two[0]['label'], two[1]['label']]))


def test_missing_data_fails_fast_with_one_clear_message(tmp_path):
  start = time.time()
  with pytest.raises(data.DataNotFoundError, match=str(tmp_path)) as err:
    data.check_available('mnist', 'train', data_dir=str(tmp_path))
  assert time.time() - start < 10
  assert 'tfds build mnist' in str(err.value)


def test_unknown_dataset_and_split():
  with pytest.raises(ValueError, match='Unknown TFDS dataset'):
    data.check_available('mnistt', 'train')
  with pytest.raises(ValueError, match="no split 'validation'"):
    data.check_available('mnist', 'validation')
