"""Export of the encoder g1 as a SavedModel usable without this package's Python classes.

The SavedModel has one serving signature, ``serving_default``, taking ``x1``: float32
[batch, H/2, W, C] (the top half, pixels in [0, 1]) and returning ``{'representation':
[batch, D]}``. ``eval_probe.py`` uses only this, and the metadata beside it
(``mi_tf_metadata.json``, ``load_metadata``) for its defaults.
"""

import json
import os

import tensorflow as tf

SIGNATURE_KEY = 'serving_default'
INPUT_NAME = 'x1'
OUTPUT_NAME = 'representation'
METADATA_FILE = 'mi_tf_metadata.json'


class _EncoderModule(tf.Module):

  def __init__(self, encoder, input_shape):
    super().__init__()
    self.encoder = encoder
    self.serve = tf.function(
        self._serve, input_signature=[
            tf.TensorSpec([None] + list(input_shape), tf.float32, name=INPUT_NAME)])

  def _serve(self, x1):
    return {OUTPUT_NAME: tf.identity(self.encoder(x1, training=False), name=OUTPUT_NAME)}


def export_encoder(encoder, export_dir, input_shape, metadata=None):
  """Writes ``encoder`` (g1) as a SavedModel in ``export_dir`` (replaced atomically).

  Args:
    encoder: a built Keras model mapping [B, *input_shape] -> [B, D].
    export_dir: destination directory.
    input_shape: shape of one input half, e.g. (14, 28, 1).
    metadata: optional JSON-serialisable dict (dataset, step, gin file...) stored as an asset.
  """
  tmp = export_dir.rstrip('/') + '.tmp'
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  module = _EncoderModule(encoder, input_shape)
  tf.saved_model.save(module, tmp, signatures={SIGNATURE_KEY: module.serve})
  with tf.io.gfile.GFile(os.path.join(tmp, METADATA_FILE), 'w') as f:
    json.dump(dict(metadata or {}, input_shape=list(input_shape)), f, indent=2)
  if tf.io.gfile.exists(export_dir):
    # Exports of single evaluations (train.export_every_eval: export/step_<k>/) are kept.
    for name in (n.rstrip('/') for n in tf.io.gfile.listdir(export_dir)):
      if name.startswith('step_'):
        tf.io.gfile.rename(os.path.join(export_dir, name), os.path.join(tmp, name))
    tf.io.gfile.rmtree(export_dir)
  tf.io.gfile.rename(tmp, export_dir)


class ExportError(ValueError):
  """The directory is not a usable SavedModel of an encoder."""


def load_encoder(export_dir):
  """Loads an exported encoder; returns (fn: x1 [B, *shape] -> [B, D] tensor, input_shape).

  Raises:
    ExportError: if ``export_dir`` is not a SavedModel with the expected signature.
  """
  if not tf.io.gfile.isdir(export_dir) or not (
      tf.io.gfile.exists(os.path.join(export_dir, 'saved_model.pb'))):
    raise ExportError(f'{export_dir} is not a SavedModel directory (no saved_model.pb). '
                      'Pass the export/ folder of a training run, e.g. <model_dir>/export.')
  loaded = tf.saved_model.load(export_dir)
  if SIGNATURE_KEY not in loaded.signatures:
    raise ExportError(f'SavedModel {export_dir} has no {SIGNATURE_KEY!r} signature; it has '
                      f'{sorted(loaded.signatures)}.')
  fn = loaded.signatures[SIGNATURE_KEY]
  specs = fn.structured_input_signature[1]
  if INPUT_NAME not in specs:
    raise ExportError(f'Signature {SIGNATURE_KEY!r} of {export_dir} takes {sorted(specs)}, '
                      f'not {INPUT_NAME!r}.')
  input_shape = tuple(specs[INPUT_NAME].shape[1:])

  def encode(x1):
    return fn(**{INPUT_NAME: tf.convert_to_tensor(x1, tf.float32)})[OUTPUT_NAME]

  encode._loaded = loaded  # Keeps the variables alive.
  return encode, input_shape


def load_metadata(export_dir):
  """The metadata ``export_encoder`` stored with a SavedModel (``mi_tf_metadata.json``).

  A training run's export records its task's ``metadata()`` (task, dataset, noise_std,
  encoder, estimator, critic, ...), the step and seed, and input_shape.

  Returns:
    dict: the stored metadata; {} if the SavedModel has none (one written by other code, or
    by a version of this package before the file existed).
  Raises:
    ExportError: if the file exists but is not a JSON object.
  """
  path = os.path.join(export_dir, METADATA_FILE)
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    text = f.read()
  try:
    metadata = json.loads(text)
  except ValueError as e:
    raise ExportError(f'{path} is not valid JSON ({e}).') from e
  if not isinstance(metadata, dict):
    raise ExportError(f'{path} holds a JSON {type(metadata).__name__}, not an object.')
  return metadata
