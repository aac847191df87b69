"""Export of the encoder g1 as a SavedModel usable without this package's Python classes.

The SavedModel has one serving signature, ``serving_default``, taking ``x1``: float32
[batch, H/2, W, C] (the top half, pixels in [0, 1]) and returning ``{'representation':
[batch, D]}``. ``eval_probe.py`` uses only this, and the metadata beside it
(``mi_tf_metadata.json``, ``load_metadata``) for its defaults.

An export replaces the previous one so that a kill at any moment loses neither
(``export_encoder``: new copy beside it, old one renamed away, new one renamed in, old one
removed); ``recover`` puts a complete copy back in place after a kill between the renames.
"""

import json
import os
import uuid

import tensorflow as tf

from mi_tf import jsonl

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


def is_complete(export_dir):
  """Whether ``export_dir`` holds a whole export: its saved_model.pb and its metadata file
  (``export_encoder`` writes the metadata last, before any rename)."""
  return all(tf.io.gfile.exists(os.path.join(export_dir, name))
             for name in ('saved_model.pb', METADATA_FILE))


def _sibling(export_dir, kind):
  # Beside export_dir, NOT starting with its name: on TensorFlow's ram:// file system a path
  # "exists" when another name starts with it (export.old would make export look present).
  head, tail = os.path.split(export_dir)
  return os.path.join(head, f'.{kind}-{uuid.uuid4().hex[:12]}-{tail}')


def _leftovers(export_dir):
  """What an interrupted ``export_encoder`` of ``export_dir`` left: [(kind, path)], kind
  'new' (the export being written), 'old' (the export being replaced) or 'tmp' (the one
  temporary directory, <export_dir>.tmp, of versions of this package before the swap)."""
  head, tail = os.path.split(export_dir)
  out = [(kind, p.rstrip('/')) for kind in ('new', 'old')
         for p in tf.io.gfile.glob(os.path.join(head, f'.{kind}-*-{tail}'))]
  if tf.io.gfile.isdir(export_dir + '.tmp'):
    out.append(('tmp', export_dir + '.tmp'))
  return out


def _move_step_exports(src, dst):
  """Moves the exports of single evaluations (train.export_every_eval: step_<k>/) from src
  into dst; one that dst already has is left in src (dst's is the newer)."""
  for name in sorted(n.rstrip('/') for n in tf.io.gfile.listdir(src)):
    if name.startswith('step_') and not tf.io.gfile.exists(os.path.join(dst, name)):
      tf.io.gfile.rename(os.path.join(src, name), os.path.join(dst, name))


def recover(export_dir):
  """Completes or undoes an ``export_encoder`` of ``export_dir`` that was interrupted (a
  process killed between its steps), so ``export_dir`` is a whole export again.

  If ``export_dir`` is missing or incomplete (an object store's rename copies object by
  object), the newest complete leftover (``is_complete``: the new export before the old one)
  takes its place. Then the step_<k>/ exports still in leftovers are moved into it, and the
  leftovers are removed. The same is done for the step_<k>/ exports inside ``export_dir``.
  Every step is again a rename or a removal, so a kill during ``recover`` is recovered by the
  next call. Safe to call whenever no other process exports to ``export_dir``.

  Returns:
    list of str: what was done (empty if there was nothing to recover), for the log.
  """
  export_dir = export_dir.rstrip('/')
  done = []
  leftovers = _leftovers(export_dir)
  if leftovers and not is_complete(export_dir):
    complete = [path for kind, path in sorted(leftovers, key=lambda kp: _RECOVERY_ORDER[kp[0]])
                if is_complete(path)]
    if complete:
      if tf.io.gfile.exists(export_dir):
        _move_step_exports(export_dir, complete[0])
        tf.io.gfile.rmtree(export_dir)
        done.append(f'removed the incomplete {export_dir}')
      tf.io.gfile.rename(complete[0], export_dir)
      done.append(f'put back {complete[0]} as {export_dir}')
  for _, path in leftovers:
    if not tf.io.gfile.exists(path):
      continue  # The one just put back.
    if tf.io.gfile.isdir(export_dir):
      _move_step_exports(path, export_dir)
    tf.io.gfile.rmtree(path)
    done.append(f'removed {path}')
  if tf.io.gfile.isdir(export_dir):
    targets = set()
    for name in tf.io.gfile.listdir(export_dir):
      name = name.rstrip('/')
      if name.startswith(('.new-', '.old-')) and '-step_' in name:
        targets.add(os.path.join(export_dir, name.split('-', 2)[2]))
    for target in sorted(targets):
      done += recover(target)
  return done


# The complete leftover put back first: the new export, then the old code's temporary one (it
# was complete when that code removed the export), then the replaced one.
_RECOVERY_ORDER = {'new': 0, 'tmp': 1, 'old': 2}


def export_encoder(encoder, export_dir, input_shape, metadata=None):
  """Writes ``encoder`` (g1) as a SavedModel in ``export_dir``, replacing any export there so
  that a process killed at any moment leaves the old or the new export (``recover`` puts it
  back in place if the kill fell between the two renames).

  Steps: the new export is written to ``.new-<id>-<name>`` beside ``export_dir`` (its
  metadata file last); the old export is renamed away to ``.old-<id>-<name>``; the new one is
  renamed into place; the old one's step_<k>/ exports (train.export_every_eval) are moved into
  the new one; the old one is removed. Leftovers of an earlier interrupted export are
  recovered first (``recover``). On a file system without atomic directory renames (an object
  store copies), ``recover`` still finds the complete copy.

  Args:
    encoder: a built Keras model mapping [B, *input_shape] -> [B, D].
    export_dir: destination directory.
    input_shape: shape of one input half, e.g. (14, 28, 1).
    metadata: optional JSON-serialisable dict (dataset, step, gin file...) stored beside the
      SavedModel as mi_tf_metadata.json (strict JSON, ``jsonl.dumps_strict``), with
      input_shape.
  """
  export_dir = export_dir.rstrip('/')
  recover(export_dir)
  new = _sibling(export_dir, 'new')
  module = _EncoderModule(encoder, input_shape)
  tf.saved_model.save(module, new, signatures={SIGNATURE_KEY: module.serve})
  jsonl.write_json(os.path.join(new, METADATA_FILE),
                   dict(metadata or {}, input_shape=list(input_shape)))
  old = None
  if tf.io.gfile.exists(export_dir):
    old = _sibling(export_dir, 'old')
    tf.io.gfile.rename(export_dir, old)
  tf.io.gfile.rename(new, export_dir)
  if old is not None:
    _move_step_exports(old, export_dir)
    tf.io.gfile.rmtree(old)


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
