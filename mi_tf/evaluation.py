"""Evaluation: frozen features, the paper's linear probe, head metrics, blockwise estimates of
every registered estimator, and the stand-alone probe of an exported encoder (eval_probe.py).

big_vision's evaluators are the model: each function here yields named metrics
(``{'probe/test_accuracy': ..., 'I_NCE/test': ...}``) that a task's ``evaluate`` collects;
none of them knows which task or training loop calls it.
"""

import functools
import inspect
import logging
import time
import weakref

import gin
import numpy as np
import tensorflow as tf

from mi_tf import data as data_lib
from mi_tf import estimators
from mi_tf import export as export_lib
from mi_tf import probe as probe_lib
from mi_tf import timing

# ``with timed('part'):`` adds the seconds of an evaluation's part to the split that the
# training loop records (metrics.jsonl ``time/<part>_seconds``, final_metrics.json 'time').
# Parts: load_splits, encode, estimators, probe, probe_fast, probe_knn, head, invertibility,
# jacobian.
timed = timing.EVAL_TIMINGS.timed

_LOG = logging.getLogger(__name__)


# Not an attribute of the model: Keras would track it and SavedModel export would trace it.
_ENCODE_FNS = weakref.WeakKeyDictionary()


def encode(model, x, batch_size=1000):
  """Frozen features ``model(x)`` of a numpy array [N, ...], in batches -> numpy [N, D].

  The tf.function is built once per model (one trace per batch shape).
  """
  with timed('encode'):
    fn = _ENCODE_FNS.get(model)
    if fn is None:
      fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
      _ENCODE_FNS[model] = fn
    out = [fn(tf.convert_to_tensor(x[i:i + batch_size])).numpy()
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out)


def encode_eval_splits(data, model):
  """Frozen features model(X1) of the train and test evaluation splits of ``data``.

  Args:
    data: a ``mi_tf.data.ImageHalves``.
    model: the encoder g1, [N, ...] -> [N, D].
  Returns:
    (f_tr [N_tr, D], y_tr [N_tr], f_te [N_te, D], y_te [N_te], {'eval/encode_seconds': s}).
  """
  x1_tr, _, y_tr = data.eval_split('train')
  x1_te, _, y_te = data.eval_split('test')
  start = time.time()
  f_tr, f_te = encode(model, x1_tr), encode(model, x1_te)
  return f_tr, y_tr, f_te, y_te, {'eval/encode_seconds': time.time() - start}


def probe_metrics(f_tr, y_tr, f_te, y_te, converged=False):
  """The paper's linear probe (mi_tf.probe) on frozen features, as evaluation metrics.

  Args:
    f_tr, f_te: features g1(X1) of the train and test splits, [N, D].
    y_tr, y_te: their labels, [N].
    converged: also fit the same objective to near convergence (``probe.fit_probe``'s 'fast'
      protocol: L-BFGS to gradient 1e-4, within 0.1 point of the converged optimum), the
      second protocol every claim is checked under; and the k-NN probe (``probe.knn_probe``:
      cosine similarity, k = 20 majority vote, gin-bindable as ``knn_probe.k``). The tasks ask
      for both at step 0 and at the final evaluation.
  Returns:
    dict: probe/test_accuracy, probe/train_accuracy, probe/seconds; with ``converged`` also
    probe_fast/test_accuracy, probe_fast/train_accuracy, probe_fast/converged (1.0 if L-BFGS
    reached its tolerance within its iteration limit), probe_fast/seconds, and
    probe_knn/test_accuracy, probe_knn/train_accuracy (leave-one-out on the first 1000
    training examples; absent if the probe omits it), probe_knn/seconds.
  """
  with timed('probe'):
    probe = probe_lib.linear_probe(f_tr, y_tr, f_te, y_te)
  out = {'probe/test_accuracy': probe['test_accuracy'],
         'probe/train_accuracy': probe['train_accuracy'],
         'probe/seconds': probe['seconds']}
  if converged:
    with timed('probe_fast'):
      fast = probe_lib.fit_probe(f_tr, y_tr, f_te, y_te, protocol='fast')
    out.update({'probe_fast/test_accuracy': fast['test_accuracy'],
                'probe_fast/train_accuracy': fast['train_accuracy'],
                'probe_fast/converged': float(fast['converged']),
                'probe_fast/seconds': fast['seconds']})
    with timed('probe_knn'):
      knn = probe_lib.knn_probe(f_tr, y_tr, f_te, y_te)
    out['probe_knn/test_accuracy'] = knn['test_accuracy']
    if knn['train_accuracy'] is not None:
      out['probe_knn/train_accuracy'] = knn['train_accuracy']
    out['probe_knn/seconds'] = knn['seconds']
  return out


# Test inputs on which the invertibility of g1 is measured (the first ones of the test split).
INVERTIBILITY_EXAMPLES = 1000

# One tf.function per encoder, traced once per process (batch shape [250, ...]), as
# _ENCODE_FNS. Run eagerly, the TFP bijector chains of a 30-coupling RealNVP cost about 10 s
# per evaluation in Python overhead. Only for additive couplings: there the graph gives the
# eager values bitwise (tests/test_wall_split.py; whole Sec. 3.1 runs agree in every metric),
# whereas for trained affine couplings its reconstruction error differs from the eager one in
# the 1e-6 range, so affine encoders keep the eager loop.
_INVERTIBILITY_FNS = weakref.WeakKeyDictionary()


def _invertibility_batch(encoder, batch):
  """(max |g^-1(g(x)) - x| over the batch, log |det dg/dx| [B]) of one batch."""
  flat = tf.reshape(batch, [tf.shape(batch)[0], -1])
  back = encoder.inverse(encoder.forward(batch))
  return tf.reduce_max(tf.abs(back - flat)), encoder.forward_log_det_jacobian(batch)


def invertibility_metrics(encoder, x, batch_size=250, graph=None):
  """Measures that an invertible encoder is one (Sec. 3.1: then I(g1(X1); X2) = I(X1; X2)).

  Args:
    encoder: a model with ``forward``, ``inverse`` (on flattened inputs) and
      ``forward_log_det_jacobian`` (``mi_tf.encoders.RealNVP``); others give {}.
    x: inputs [N, ...] (a fixed set: the same at every evaluation).
    graph: run each batch in one tf.function (True) or eagerly (False, the reference the
      graph path is tested against); None: the graph for additive couplings only.
  Returns:
    {'invertibility/max_reconstruction_error': max over x and coordinates of
     |g^-1(g(x)) - x|, 'invertibility/mean_log_det_jacobian': mean of log |det dg/dx|
     (0 for additive couplings, a volume-preserving flow)}.
  """
  if not all(hasattr(encoder, a) for a in ('forward', 'inverse', 'forward_log_det_jacobian')):
    return {}
  with timed('invertibility'):
    if graph is None:
      graph = getattr(encoder, 'coupling', None) == 'additive'
    if graph:
      fn = _INVERTIBILITY_FNS.get(encoder)
      if fn is None:
        fn = tf.function(functools.partial(_invertibility_batch, encoder),
                         reduce_retracing=True)
        _INVERTIBILITY_FNS[encoder] = fn
    else:
      fn = functools.partial(_invertibility_batch, encoder)
    error, log_dets = 0.0, []
    for i in range(0, len(x), batch_size):
      batch_error, log_det = fn(tf.constant(x[i:i + batch_size]))
      error = max(error, float(batch_error))
      log_dets.append(log_det.numpy())
  return {'invertibility/max_reconstruction_error': error,
          'invertibility/mean_log_det_jacobian': float(np.mean(np.concatenate(log_dets)))}


def head_metrics(head, f_te, y_te):
  """Accuracy and cross-entropy of a trained linear head on test features.

  Args:
    head: a layer mapping features [N, D] to logits [N, C].
    f_te: test features [N, D]; y_te: labels [N].
  Returns:
    (dict with head/test_accuracy and head/test_cross_entropy, logits [N, C]).
  """
  with timed('head'):
    logits = head(tf.constant(f_te), training=False)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y_te, logits=logits)
    return {'head/test_accuracy': float(np.mean(np.argmax(logits, -1) == y_te)),
            'head/test_cross_entropy': float(tf.reduce_mean(ce))}, logits


def block_estimates(scores_fn, num_blocks):
  """Every registered estimator on ``num_blocks`` score matrices, in one graph.

  Scores are cast to float64 first: the NWJ value of a critic trained with InfoNCE overflows
  float32 (exp of scores in the thousands).

  Args:
    scores_fn: ``k -> scores [d, d]`` (positives on the diagonal) for block k < num_blocks;
      traced inside a ``tf.range`` loop, so it must be TF code (a tf.function caller).
    num_blocks: the number of blocks (a Python int or a scalar int tensor).
  Returns:
    {estimator name: float64 tensor [num_blocks]} of per-block estimates.
  """
  chosen = list(estimators.REGISTRY.values())
  arrays = [tf.TensorArray(tf.float64, size=num_blocks) for _ in chosen]
  for k in tf.range(num_blocks):
    s = tf.cast(scores_fn(k), tf.float64)
    arrays = [a.write(k, e.value(s)) for a, e in zip(arrays, chosen)]
  return {e.name: a.stack() for e, a in zip(chosen, arrays)}


def batched_features(encode, x, batch_size=1000):
  """``encode`` (a loaded SavedModel's g1) applied to a numpy array [N, ...] in batches.

  Returns:
    numpy features [N, D].
  """
  return np.concatenate([encode(x[i:i + batch_size]).numpy()
                         for i in range(0, len(x), batch_size)])


def _probe_parameters(protocol, knn_k=None, knn_temperature=None):
  """{'C', 'tol', 'max_iter', 'solver'} that ``probe.fit_probe(protocol=...)`` fits with: the
  probe functions' defaults (``probe.py``: C=10, tol=0.1, max_iter=100 for the paper's SAGA;
  gradient tolerance 1e-6, or ``probe.FAST_TOLERANCE`` for 'fast', and 3000 L-BFGS iterations
  for the converged probe), with any gin bindings of them in this process applied. For 'knn'
  (``probe.knn_probe``): {'k', 'temperature', 'metric'}, ``knn_k`` and ``knn_temperature``
  (when not None) over the gin bindings over the defaults (k=20, majority vote, cosine)."""
  if protocol not in probe_lib.PROBES:
    raise ValueError(f'Unknown probe protocol {protocol!r}; choose one of '
                     f'{probe_lib.PROBES}.')
  fn = {'paper': probe_lib.linear_probe,
        probe_lib.KNN: probe_lib.knn_probe}.get(protocol, probe_lib.converged_probe)
  values = {name: p.default for name, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}
  values.update(gin.get_bindings(fn))
  if protocol == probe_lib.KNN:
    k = values['k'] if knn_k is None else knn_k
    temperature = values['temperature'] if knn_temperature is None else knn_temperature
    return {'k': k, 'temperature': None if temperature is None else float(temperature),
            'metric': probe_lib.KNN_METRIC}
  if protocol == 'paper':
    return {'C': float(values['C']), 'tol': float(values['tol']),
            'max_iter': int(values['max_iter']), 'solver': 'saga'}
  tol = probe_lib.FAST_TOLERANCE if protocol == 'fast' else values['tolerance']
  return {'C': float(values['C']), 'tol': float(tol),
          'max_iter': int(values['max_iterations']), 'solver': f'lbfgs_{values["solver"]}'}


def _from_metadata(name, given, metadata, default):
  """(value, source) of a probe setting: the caller's ``given`` ('flag'; a WARNING if the
  export's metadata says otherwise), else the metadata's ('metadata'), else ``default``."""
  stored = metadata.get(name)
  if given is None:
    return (stored, 'metadata') if stored is not None else (default, 'default')
  if stored is not None and stored != given:
    _LOG.warning('%s=%r given, but the export was trained with %s=%r (its %s): probing '
                 'with the given %r.', name, given, name, stored, export_lib.METADATA_FILE,
                 given)
  return given, 'flag'


def probe_saved_model(saved_model=None, dataset=None, data_dir=None, noise_std=None,
                      train_split='train', test_split='test', seed=0, batch_size=1000,
                      probe='paper', also_fast=False, knn_k=None, knn_temperature=None):
  """Probe accuracy of g1(X1) from a SavedModel, or of the X1 pixels if saved_model is None.

  dataset, noise_std: the halves to probe on. None (the default): what the export's metadata
    (``export.load_metadata``: the dataset and coupled noise the run trained with) says, else
    'mnist' and 0.0 (pixels, or an export without metadata). A value given that differs from
    the metadata's is used, with a WARNING (logger ``mi_tf.evaluation``) naming both.
  probe: 'paper' (SAGA, tol=0.1: the default, the paper's protocol), 'converged'
    (``mi_tf.probe.converged_probe``: the same objective, L-BFGS to convergence) or 'fast'
    (the same, stopped at ``probe.FAST_TOLERANCE``) or 'knn' (``mi_tf.probe.knn_probe``:
    cosine similarity, majority vote of the ``knn_k`` nearest training examples, default 20;
    with ``knn_temperature`` T votes weighted exp(similarity / T); its train_accuracy is
    leave-one-out on the first 1000 training examples, None if omitted).
  also_fast: also fit the 'fast' converged probe on the same features and add its result as
    fast_test_accuracy, fast_train_accuracy, fast_converged, fast_probe_seconds, fast_tol (the
    second protocol of the claim checks).

  Progress goes to logger ``mi_tf.evaluation`` at INFO (splits, encoding, fit, total time).

  Returns:
    dict (probe_result.json): train_accuracy, test_accuracy, feature_dim, train_size,
    test_size, seconds (total), probe_seconds, n_iter, source (the SavedModel or 'pixels'),
    dataset, noise_std, dataset_source and noise_std_source ('flag', 'metadata' or
    'default'), protocol, C, tol, max_iter, solver, seed (SAGA's random_state), train_split,
    test_split, data_dir (when given); for a SavedModel export_step, export_seed (None if
    its metadata lacks them) and export_metadata (the metadata dict, {} if none); probe (when
    not 'paper', as before 'protocol' existed). For 'knn' k, temperature, metric and
    train_accuracy_examples (how many the leave-one-out train accuracy scored) replace C, tol,
    max_iter, solver and n_iter.

  Raises:
    export.ExportError: not a SavedModel, or its input shape does not match the halves.
    ValueError: an unknown probe protocol.
  """
  return probe_saved_model_protocols(
      saved_model, dataset, data_dir, noise_std, train_split, test_split, seed, batch_size,
      ((probe, also_fast),), knn_k, knn_temperature)[0]


def probe_saved_model_protocols(saved_model=None, dataset=None, data_dir=None, noise_std=None,
                                train_split='train', test_split='test', seed=0,
                                batch_size=1000, probes=(('paper', False),), knn_k=None,
                                knn_temperature=None):
  """``probe_saved_model`` for several protocols on features loaded (and encoded) once.

  probes: (probe, also_fast) pairs. Returns a list of results, in that order, each what
  ``probe_saved_model(probe=probe, also_fast=also_fast)`` returns, but for 'seconds': the
  shared loading and encoding time plus that protocol's own fits. ``mi-tf-probe --also_knn``
  uses it (the linear protocol and 'knn').
  """
  start = time.time()
  params = {p: _probe_parameters(p, knn_k, knn_temperature) for p, _ in probes}
  metadata, encode = {}, None
  if saved_model is not None:
    encode, input_shape = export_lib.load_encoder(saved_model)
    metadata = export_lib.load_metadata(saved_model)
  dataset, dataset_source = _from_metadata('dataset', dataset, metadata, 'mnist')
  noise_std, noise_source = _from_metadata(
      'noise_std', None if noise_std is None else float(noise_std), metadata, 0.0)
  noise_std = float(noise_std)
  _LOG.info('Loading the %s and %s halves of %s (noise_std %g, from the %s).', train_split,
            test_split, dataset, noise_std, noise_source)
  x1_tr, _, y_tr = data_lib.eval_halves(dataset, train_split, data_dir, noise_std)
  x1_te, _, y_te = data_lib.eval_halves(dataset, test_split, data_dir, noise_std)
  if encode is None:
    f_tr, f_te = x1_tr.reshape(len(x1_tr), -1), x1_te.reshape(len(x1_te), -1)
  else:
    if tuple(input_shape) != tuple(x1_tr.shape[1:]):
      raise export_lib.ExportError(
          f'SavedModel {saved_model} expects inputs of shape {list(input_shape)}, but the '
          f'halves of {dataset!r} have shape {list(x1_tr.shape[1:])}. Was it trained on '
          'another dataset? Pass the matching --dataset.')
    _LOG.info('Encoding %d examples with %s.', len(x1_tr) + len(x1_te), saved_model)
    f_tr = batched_features(encode, x1_tr, batch_size)
    f_te = batched_features(encode, x1_te, batch_size)
  # What every protocol's result says of its features.
  shared = {'source': saved_model or 'pixels', 'dataset': dataset, 'noise_std': noise_std,
            'dataset_source': dataset_source, 'noise_std_source': noise_source, 'seed': seed,
            'train_split': train_split, 'test_split': test_split,
            'train_size': int(len(y_tr)), 'test_size': int(len(y_te))}
  if data_dir is not None:
    shared['data_dir'] = data_dir
  if saved_model is not None:
    shared.update(export_step=metadata.get('step'), export_seed=metadata.get('seed'),
                  export_metadata=metadata)
  load_seconds = time.time() - start
  return [_fit_protocol(probe, params[probe], also_fast, (f_tr, y_tr, f_te, y_te), seed,
                        batch_size, shared, load_seconds)
          for probe, also_fast in probes]


def _fit_protocol(probe, params, also_fast, arrays, seed, batch_size, shared, load_seconds):
  """One protocol's result (``probe_saved_model``) on the loaded features ``arrays`` (f_tr,
  y_tr, f_te, y_te); ``shared``: the keys every protocol's result has."""
  start = time.time()
  f_tr, y_tr, f_te, y_te = arrays
  extra = {} if probe == 'paper' else {'probe': probe}  # Paper results keep their keys.
  if probe == probe_lib.KNN:
    _LOG.info('Fitting the k-NN probe (k=%d, %s similarity, %s) on %d x %d features.',
              params['k'], params['metric'],
              'majority vote' if params['temperature'] is None
              else f'votes exp(s / {params["temperature"]:g})', f_tr.shape[0], f_tr.shape[1])
    result = probe_lib.knn_probe(f_tr, y_tr, f_te, y_te, k=params['k'],
                                 temperature=params['temperature'], batch_size=batch_size)
    extra['train_accuracy_examples'] = result['train_examples']
  else:
    _LOG.info('Fitting the %s probe (%s, C=%g, tol=%g, max_iter=%d) on %d x %d features.',
              probe, params['solver'], params['C'], params['tol'], params['max_iter'],
              f_tr.shape[0], f_tr.shape[1])
    result = probe_lib.fit_probe(f_tr, y_tr, f_te, y_te, protocol=probe, seed=seed)
    extra['n_iter'] = result['n_iter']
  if also_fast:
    if probe != 'fast':
      _LOG.info("Fitting the 'fast' converged probe too.")
    fast = (result if probe == 'fast' else
            probe_lib.fit_probe(f_tr, y_tr, f_te, y_te, protocol='fast'))
    extra.update(fast_test_accuracy=fast['test_accuracy'],
                 fast_train_accuracy=fast['train_accuracy'],
                 fast_converged=bool(fast['converged']), fast_probe_seconds=fast['seconds'],
                 fast_tol=_probe_parameters('fast')['tol'])
  seconds = load_seconds + time.time() - start
  train_accuracy = result['train_accuracy']
  _LOG.info('Done in %.1f s: test accuracy %.2f%% (train %s).', seconds,
            100 * result['test_accuracy'],
            'not scored' if train_accuracy is None else f'{100 * train_accuracy:.2f}%')
  return {
      **extra, **shared, 'protocol': probe, **params,
      'train_accuracy': result['train_accuracy'], 'test_accuracy': result['test_accuracy'],
      'feature_dim': result['feature_dim'], 'probe_seconds': result['seconds'],
      'seconds': seconds}
