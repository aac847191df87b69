"""mi_tf: TF2/Keras reproduction of "On Mutual Information Maximization for Representation
Learning" (Tschannen et al., ICLR 2020).

Install from a checkout: pip install -e '.[test]' (development; gin/ and git are read from
the checkout) or pip install . (a plain package: the gin files travel inside it).
"""

import glob
import importlib.util
import json
import os
import re
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _version():
  with open(os.path.join(HERE, 'mi_tf', '__init__.py'), encoding='utf-8') as f:
    return re.search(r"^__version__ = '([^']+)'", f.read(), re.M).group(1)


def _git_commit():
  """{'commit': sha, 'dirty': bool} of the checkout being built; nulls without one (e.g. a
  build from an sdist, which may be unpacked inside some other git checkout). Read with
  mi_tf/provenance.py, loaded by path: it is plain Python, and importing the package is not
  needed to build it."""
  if not os.path.exists(os.path.join(HERE, '.git')):
    return {'commit': None, 'dirty': None}
  spec = importlib.util.spec_from_file_location(
      '_mi_tf_provenance', os.path.join(HERE, 'mi_tf', 'provenance.py'))
  provenance = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(provenance)
  return provenance.git_commit(HERE) or {'commit': None, 'dirty': None}


class BuildPyWithGinFiles(build_py):
  """build_py, plus: the repository's gin/**/*.gin as package data mi_tf/gin/... (found by
  mi_tf.gin_files), and mi_tf/_build_info.json, the commit built from (read by
  mi_tf.provenance). An editable install gets neither: it reads gin/ and git from the
  checkout."""

  def run(self):
    super().run()
    if getattr(self, 'editable_mode', False):
      return
    package = os.path.join(self.build_lib, 'mi_tf')
    shutil.rmtree(os.path.join(package, 'gin'), ignore_errors=True)  # No stale files.
    sources = sorted(glob.glob(os.path.join(HERE, 'gin', '**', '*.gin'), recursive=True))
    if not sources:
      raise RuntimeError(f'no gin files under {os.path.join(HERE, "gin")}')
    for source in sources:
      target = os.path.join(package, os.path.relpath(source, HERE))
      self.mkpath(os.path.dirname(target))
      self.copy_file(source, target)
    info = os.path.join(package, '_build_info.json')
    tmp = info + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
      json.dump(_git_commit(), f)
    os.replace(tmp, info)


setup(
    name='mi_tf',
    version=_version(),
    description='Reproduction of Tschannen et al. (ICLR 2020) in TensorFlow 2 / Keras',
    license='Apache-2.0',
    license_files=['LICENSE'],
    packages=find_packages(include=['mi_tf', 'mi_tf.*']),
    # study_durations.json: the runner's measured run times (mi_tf.runs.measured_durations).
    # The gin files come in through BuildPyWithGinFiles.
    package_data={'mi_tf': ['study_durations.json']},
    cmdclass={'build_py': BuildPyWithGinFiles},
    entry_points={
        'console_scripts': [
            'mi-tf-train = mi_tf.scripts.train:run',
            'mi-tf-probe = mi_tf.scripts.probe:run',
            'mi-tf-reproduce = mi_tf.reproduce:main',
        ],
    },
    python_requires='>=3.10',
    install_requires=[
        'tensorflow==2.21.0',
        # mi_tf.optimizers.FusedAdam overrides private attributes of Keras' optimizer and was
        # checked against this version.
        'keras==3.15.1',
        'tf-keras==2.21.0',  # TFP 0.25 imports tf_keras unconditionally.
        'tensorflow-probability==0.25.0',
        'tensorflow-datasets==4.9.10',
        'tensorboard==2.21.0',  # TF 2.21 no longer pulls it in.
        'gin-config==0.5.0',
        'absl-py',  # The command-line flags (TensorFlow brings it too).
        'scikit-learn==1.9.1',
        'importlib_resources',  # tfds 4.9.10 imports it without declaring it.
        'matplotlib',
    ],
    # ray: the Ray executor (mi-tf-reproduce run --executor=ray). test: the suite
    # (which runs the Ray executor on a two-node local cluster, so it includes ray; xdist runs
    # it on both cores: python -m pytest -n 2), the
    # import-layer contracts (.importlinter) and the linter (ruff.toml), all run by .ci/run.
    extras_require={
        'ray': ['ray==2.60.0'],
        'test': ['pytest', 'pytest-xdist==3.8.0', 'import-linter==2.17', 'ruff==0.17.6',
                 'ray==2.60.0'],
    },
)
