"""Stand-alone linear-probe evaluation of an exported encoder or of raw pixels (eval_probe.py)."""

import time

import numpy as np

from mi_tf import data as data_lib
from mi_tf import export as export_lib
from mi_tf import probe as probe_lib


def batched_features(encode, x, batch_size=1000):
  """``encode`` (a loaded SavedModel's g1) applied to a numpy array [N, ...] in batches.

  Returns:
    numpy features [N, D].
  """
  return np.concatenate([encode(x[i:i + batch_size]).numpy()
                         for i in range(0, len(x), batch_size)])


def probe_saved_model(saved_model=None, dataset='mnist', data_dir=None, noise_std=0.0,
                      train_split='train', test_split='test', seed=0, batch_size=1000,
                      probe='paper'):
  """Probe accuracy of g1(X1) from a SavedModel, or of the X1 pixels if saved_model is None.

  probe: 'paper' (SAGA, tol=0.1: the default, the paper's protocol), 'converged'
    (``mi_tf.probe.converged_probe``, issue 6) or 'fast' (the same, ``probe.FAST_TOLERANCE``).

  Returns:
    dict: train_accuracy, test_accuracy, feature_dim, train_size, test_size, seconds (total),
    probe_seconds, source, dataset, noise_std (and probe, when not 'paper').

  Raises:
    export.ExportError: not a SavedModel, or its input shape does not match the halves.
  """
  start = time.time()
  x1_tr, _, y_tr = data_lib.eval_halves(dataset, train_split, data_dir, noise_std)
  x1_te, _, y_te = data_lib.eval_halves(dataset, test_split, data_dir, noise_std)
  if saved_model is None:
    f_tr, f_te = x1_tr.reshape(len(x1_tr), -1), x1_te.reshape(len(x1_te), -1)
  else:
    encode, input_shape = export_lib.load_encoder(saved_model)
    if tuple(input_shape) != tuple(x1_tr.shape[1:]):
      raise export_lib.ExportError(
          f'SavedModel {saved_model} expects inputs of shape {list(input_shape)}, but the '
          f'halves of {dataset!r} have shape {list(x1_tr.shape[1:])}. Was it trained on '
          'another dataset? Pass the matching --dataset.')
    f_tr = batched_features(encode, x1_tr, batch_size)
    f_te = batched_features(encode, x1_te, batch_size)
  result = probe_lib.fit_probe(f_tr, y_tr, f_te, y_te, protocol=probe, seed=seed)
  extra = {} if probe == 'paper' else {'probe': probe}  # Paper results keep their keys.
  return {
      **extra, 'source': saved_model or 'pixels', 'dataset': dataset, 'noise_std': noise_std,
      'train_accuracy': result['train_accuracy'], 'test_accuracy': result['test_accuracy'],
      'feature_dim': result['feature_dim'], 'train_size': int(len(y_tr)),
      'test_size': int(len(y_te)), 'probe_seconds': result['seconds'],
      'n_iter': result['n_iter'], 'seconds': time.time() - start}
