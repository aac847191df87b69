"""mi_tf: TF2/Keras reproduction of "On Mutual Information Maximization for Representation
Learning" (Tschannen et al., ICLR 2020). Install: pip install -e '.[test]'"""

from setuptools import find_packages, setup

setup(
    name='mi_tf',
    version='0.1.0',
    description='Reproduction of Tschannen et al. (ICLR 2020) in TensorFlow 2 / Keras',
    packages=find_packages(include=['mi_tf', 'mi_tf.*']),
    python_requires='>=3.10',
    install_requires=[
        'tensorflow==2.21.0',
        'tf-keras==2.21.0',  # TFP 0.25 imports tf_keras unconditionally.
        'tensorflow-probability==0.25.0',
        'tensorflow-datasets==4.9.10',
        'tensorboard==2.21.0',  # TF 2.21 no longer pulls it in.
        'gin-config==0.5.0',
        'scikit-learn==1.9.1',
        'importlib_resources',  # tfds 4.9.10 imports it without declaring it.
        'matplotlib',
    ],
    # ray: the Ray executor (python -m mi_tf.reproduce run --executor=ray). test: the suite
    # (which runs the Ray executor on a two-node local cluster, so it includes ray; xdist runs
    # it on both cores: python -m pytest -n 2), the
    # import-layer contracts (.importlinter) and the linter (ruff.toml), all run by .ci/run.
    extras_require={
        'ray': ['ray==2.60.0'],
        'test': ['pytest', 'pytest-xdist==3.8.0', 'import-linter==2.17', 'ruff==0.17.6',
                 'ray==2.60.0'],
    },
)
