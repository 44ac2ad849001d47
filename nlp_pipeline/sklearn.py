"""A scikit-learn estimator over the pipeline: fit(texts, y) trains through the same cached stages as `nlp-pipeline run`.

    from nlp_pipeline.sklearn import ULMFiTClassifier
    clf = ULMFiTClassifier(config={"finetune_lm.epochs": 1}, max_length=200).fit(texts, labels)
    clf.predict(["a new text"]) -> array(['pos'], dtype=object)    # labels as given to fit (classes_)
    clf.predict_proba(texts)    -> (n_texts, n_classes) float32, columns in classes_ order
    clf.score(texts, labels)    -> accuracy (ClassifierMixin)
    clf.save_bundle("model/")   -> a predict bundle folder: `nlp-pipeline predict|serve --model model/`

Takes: X, any sequence of strings (a list, a 1-D array, a pandas Series, or a one-column 2-D array or DataFrame
as a ColumnTransformer hands over); y, one class label per text (strings, integers or booleans; sklearn's
type_of_target must call it binary or multiclass). fit writes the texts with their labels to a JSONL file in a
temporary folder and runs the pipeline on it until the classifier (corpus -> tokenization -> numericalization ->
pretrain_lm -> finetune_lm -> classifier -> linear -> blend; word vectors and LSA are not built): every artifact goes to the
artifact cache, keyed by the file's contents and the config, so refitting the same data and settings is a cache
hit, and a cross-validation fold whose training rows and settings repeat loads instead of training.
Prediction goes through the predict bundle (export/bundle.py): fit saves the classifier as a bundle, keeps its
files' bytes (`bundle_files_`) and loads them with Classifier.load, so predict() answers exactly as
`nlp-pipeline predict` would with that bundle, and a pickled estimator holds bundle bytes, checked on load.

Parameters map to the pipeline's config, later layers winning: default_config.toml <- `preset` <- the estimator's
own defaults (corpus.test_size = 0: every text given to fit trains or validates) <- `config` (a dict of dotted
overrides {"classifier.max_length": 200}, or tables {"classifier": {...}}) <- the named parameters that are not
None. corpus.source, text_field, label_field and target_type are fit's; setting them is a ConfigError.
Limits: single-label classification only (no multi-label y, no regression, no sample_weight); every text is held
in memory; each fit on new data adds its artifacts to the cache (`nlp-pipeline cache gc` removes what no run
refers to, including these); a text that is empty or whitespace only is dropped from training by the corpus
stage (with a warning) but gets an answer from predict (the model's answer for a document without words).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.sparse import issparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from nlp_pipeline.core.errors import ConfigError

# fields of the corpus stage that fit() sets itself
FIT_FIELDS = ("source", "text_field", "label_field", "target_type")
ESTIMATOR_LAYER = {"corpus": {"test_size": 0.0}}  # no test carve: the caller holds its own test data
TRAIN_FILE = "train.jsonl"
SEED_SECTIONS = ("corpus", "validation", "embeddings", "lsa", "finetune_lm", "classifier", "linear")  # and pretrain_lm when it trains
THREAD_SECTIONS = ("pretrain_lm", "finetune_lm", "classifier")


class ULMFiTClassifier(ClassifierMixin, BaseEstimator):
    """ULMFiT text classifier (packaged LM -> fine-tuned LM -> classifier, blended with TF-IDF) as an estimator.

    Parameters (None = what the config says; see the module notes for the order of layers):
      config            dict of pipeline settings, {"stage.field": value} or {"stage": {"field": value}}
      preset            a named settings layer ("quick"), applied before `config`
      finetune_epochs   finetune_lm.epochs: LM fine-tuning epochs with every layer trainable (0 skips them)
      classifier_epochs classifier.stage_epochs: epochs of each gradual-unfreezing stage (an int: the same for each)
      max_length        classifier.max_length and linear.max_length: documents are cut to their first max_length tokens
      blend_linear      blend.linear: blend in the TF-IDF n-gram logistic regression (the linear stage)
      seed              the seed of every stage (corpus, pretrain_lm, finetune_lm, classifier, ...)
      num_threads       torch threads for training and prediction (0 = every usable core; not part of any key)
      cache_dir         artifact cache folder (None: NLP_PIPELINE_CACHE, else ~/.cache/nlp-pipeline)
      verbose           print the stage lines (running / cache hit) on stderr

    Attributes after fit: classes_ (the labels, sorted as numpy sorts them), bundle_files_ (the predict bundle as
    {file name: bytes}), keys_ (the cache key of each stage instance), metrics_ (the classifier's validation
    scores and blend weight, from the bundle's config.json).
    """

    def __init__(self, config: dict | None = None, preset: str | None = None, finetune_epochs: int | None = None,
                 classifier_epochs: int | list | None = None, max_length: int | None = None,
                 blend_linear: bool | None = None, seed: int | None = None, num_threads: int | None = None,
                 cache_dir: str | None = None, verbose: bool = False):
        self.config = config
        self.preset = preset
        self.finetune_epochs = finetune_epochs
        self.classifier_epochs = classifier_epochs
        self.max_length = max_length
        self.blend_linear = blend_linear
        self.seed = seed
        self.num_threads = num_threads
        self.cache_dir = cache_dir
        self.verbose = verbose

    # --- config ------------------------------------------------------------------------------------------------
    def pipeline_layers(self) -> list[dict]:
        """The config layers these parameters give, after the defaults and the preset (see the module notes)."""
        layers = [ESTIMATOR_LAYER, _config_layer(self.config)]
        named: dict[str, dict] = {}
        if self.finetune_epochs is not None:
            named.setdefault("finetune_lm", {})["epochs"] = self.finetune_epochs
        if self.classifier_epochs is not None:
            named.setdefault("classifier", {})["stage_epochs"] = self.classifier_epochs
        if self.max_length is not None:
            for section in ("classifier", "linear"):
                named.setdefault(section, {})["max_length"] = self.max_length
        if self.blend_linear is not None:
            named.setdefault("blend", {})["linear"] = self.blend_linear
        for value, sections, field in ((self.seed, SEED_SECTIONS, "seed"), (self.num_threads, THREAD_SECTIONS, "num_threads")):
            if value is not None:
                for section in sections:
                    named.setdefault(section, {})[field] = value
        layers.append(named)
        return layers

    def pipeline_config(self, source: str = TRAIN_FILE) -> dict[str, Any]:
        """The resolved config of every stage that fit() would run on the training file `source`."""
        from nlp_pipeline import pipeline
        from nlp_pipeline.core import config as config_layer

        layers = self.pipeline_layers()
        for layer in layers:
            fixed = sorted(set(layer.get("corpus", {})) & set(FIT_FIELDS))
            if fixed:
                raise ConfigError(f"corpus.{fixed[0]} is set by fit() (the texts and labels it is given); "
                                  f"remove it from ULMFiTClassifier's config")
        if self.classifier_epochs is not None and not isinstance(self.classifier_epochs, (list, tuple)):
            stages = len(config_layer.resolve(pipeline.SCHEMAS, self._all_layers(layers[:-1], source), moved=pipeline.MOVED)["classifier"].stage_epochs)
            layers[-1]["classifier"]["stage_epochs"] = [self.classifier_epochs] * stages
        configs = config_layer.resolve(pipeline.SCHEMAS, self._all_layers(layers, source), moved=pipeline.MOVED)
        if self.seed is not None and pipeline.trains_pretrain_lm(configs):  # a loaded LM has no seed to set
            layers[-1].setdefault("pretrain_lm", {})["seed"] = self.seed
            configs = config_layer.resolve(pipeline.SCHEMAS, self._all_layers(layers, source), moved=pipeline.MOVED)
        return configs

    def _all_layers(self, layers: list[dict], source: str) -> list[dict]:
        from nlp_pipeline import pipeline

        fit_layer = {"corpus": {"source": source, "text_field": "text", "label_field": "label", "target_type": "class"}}
        return [*pipeline.default_layers(), *([pipeline.preset_layer(self.preset)] if self.preset else []), *layers, fit_layer]

    # --- fit / predict -----------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> "ULMFiTClassifier":
        """Train on texts X with labels y through the cached pipeline stages; returns self."""
        from nlp_pipeline import pipeline
        from nlp_pipeline.core.store import ArtifactStore
        from nlp_pipeline.export.bundle import save_bundle
        from nlp_pipeline.models.blend import compose

        texts = as_texts(X, "fit")
        labels = _as_labels(y, len(texts))
        classes, encoded = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"ULMFiTClassifier needs at least two classes in y to learn from, got one class: {classes[0]!r}")
        if not any(text.strip() for text in texts):
            raise ValueError(f"every text given to ULMFiTClassifier.fit is empty or whitespace only ({len(texts)} texts)")
        names = label_names(classes)
        echo: Callable[[str], None] = _stderr if self.verbose else _silent
        with tempfile.TemporaryDirectory(prefix="nlp-pipeline-fit-") as folder:
            path = Path(folder) / TRAIN_FILE
            with open(path, "w", encoding="utf-8") as handle:
                for text, label in zip(texts, encoded):
                    # ASCII escapes: any str can be written, lone surrogates included (the corpus stage reads those as U+FFFD)
                    handle.write(json.dumps({"text": text, "label": names[label]}) + "\n")
            configs = self.pipeline_config(str(path))
            store = ArtifactStore(self.cache_dir)
            result = pipeline.run(configs, store, until="blend", keep=["classifier", "blend"], echo=echo, coordinator=None)
            trained = compose(result.artifacts["classifier"], result.artifacts["blend"])
            bundle = save_bundle(trained, Path(folder) / "model")
            files = {p.name: p.read_bytes() for p in sorted(bundle.iterdir()) if p.is_file()}
        self.classes_ = classes
        self.bundle_files_ = files
        self.keys_ = result.keys()
        self._load(names)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n_texts, n_classes) float32 class probabilities, columns in classes_ order (blended as trained)."""
        check_is_fitted(self, "bundle_files_")
        texts = as_texts(X, "predict_proba")
        probabilities = self._predictor.predict_proba(texts)
        out = np.zeros((len(texts), len(self.classes_)), dtype=np.float32)
        out[:, self._columns >= 0] = probabilities[:, self._columns[self._columns >= 0]]
        return out

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each text, as a label of classes_."""
        check_is_fitted(self, "bundle_files_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def save_bundle(self, folder: str | Path) -> Path:
        """Write the fitted model as a predict bundle folder (`nlp-pipeline predict|serve --model FOLDER`), whole or
        not at all: it is written beside `folder` and renamed into place. An existing folder is replaced only when it
        is empty or an earlier bundle (else a ConfigError). Returns the folder."""
        from nlp_pipeline.core.atomic import replace_folder
        from nlp_pipeline.export.bundle import _is_bundle_dir

        check_is_fitted(self, "bundle_files_")
        folder = Path(folder)
        if folder.exists() and not (folder.is_dir() and (not any(folder.iterdir()) or _is_bundle_dir(folder))):
            raise ConfigError(f"{folder} exists and is not a bundle folder; choose another path or remove it")

        def fill(staging: Path) -> None:
            for name, data in self.bundle_files_.items():
                (staging / name).write_bytes(data)

        replace_folder(folder, fill)
        return folder

    # --- internals ---------------------------------------------------------------------------------------------
    def _load(self, names: list[str] | None = None) -> None:
        """Load bundle_files_ with Classifier.load (every check of a bundle on disk) and map its columns."""
        from nlp_pipeline.export.bundle import Classifier

        with tempfile.TemporaryDirectory(prefix="nlp-pipeline-bundle-") as folder:
            bundle = Path(folder) / "model"
            bundle.mkdir()
            for name, data in self.bundle_files_.items():
                (bundle / name).write_bytes(data)
            predictor = Classifier.load(bundle, device="cpu", num_threads=self.num_threads or 0)
        predictor.path = None  # the temporary folder is gone
        names = names if names is not None else label_names(self.classes_)
        position = {name: i for i, name in enumerate(predictor.label_names)}
        self._predictor = predictor
        self._columns = np.array([position.get(name, -1) for name in names], dtype=np.int64)  # -1: class not learned
        self.metrics_ = dict(predictor.config.get("metrics", {}), blend_weight=(predictor.config.get("linear") or {}).get("weight"))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_predictor", None)  # torch modules: rebuilt from bundle_files_ on unpickling
        state.pop("_columns", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "bundle_files_" in state:
            self._load()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False   # texts, not a feature matrix
        tags.input_tags.one_d_array = True
        tags.input_tags.string = True
        tags.classifier_tags.multi_label = False
        tags.target_tags.required = True
        return tags


# --- helpers -----------------------------------------------------------------------------------------------------

def as_texts(X: Any, method: str) -> list[str]:
    """X as a list of str, or a ValueError/TypeError naming what is wrong.

    as_texts(["a", "b"], "fit") -> ["a", "b"]; a (n, 1) array or a one-column DataFrame -> its column;
    a numeric matrix, a lone string, None or NaN items -> an error saying what the estimator takes.
    """
    what = f"ULMFiTClassifier.{method} takes texts: a list, 1-D array or Series of strings"
    if issparse(X):
        raise TypeError(f"{what}, got a sparse {type(X).__name__}: sparse input is not supported (put the estimator "
                        f"where the raw texts are, not after a vectorizer)")
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{what}, got a single {type(X).__name__}; wrap it in a list: [text]")
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2:  # a DataFrame
        if X.shape[1] != 1:
            raise ValueError(f"{what}, got a DataFrame with {X.shape[1]} columns; select the text column")
        X = X.iloc[:, 0]
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(f"{what}, got a {X.ndim}-D array of {X.dtype} with shape {X.shape}")
        items = X.tolist()
    else:
        try:
            items = list(X)
        except TypeError:
            raise TypeError(f"{what}, got {type(X).__name__}") from None
    for i, item in enumerate(items):
        if isinstance(item, np.str_):
            items[i] = str(item)
        elif not isinstance(item, str):
            shown = "None" if item is None else f"a {type(item).__name__} ({str(item)[:40]!r})"
            raise ValueError(f"{what}; text {i} is {shown}")
    if not items:
        raise ValueError(f"{what}, got none (0 samples)")
    return items


def _as_labels(y: Any, n_texts: int) -> np.ndarray:
    """y as a 1-D array of class labels (one per text); a ValueError for anything else."""
    if y is None:
        raise ValueError("ULMFiTClassifier requires y to be passed, but the target y is None; give one class label per text")
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = column_or_1d(labels, warn=True)  # a column vector: sklearn's DataConversionWarning, then its column
    if labels.ndim != 1:
        raise ValueError(f"ULMFiTClassifier takes one class label per text (a 1-D y), got shape {labels.shape}; "
                         f"multi-label and multi-output targets are not supported")
    if len(labels) != n_texts:
        raise ValueError(f"ULMFiTClassifier.fit got {n_texts} texts but {len(labels)} labels; give one label per text")
    check_classification_targets(labels)
    return labels


_PLAIN = re.compile(r"[^\s\x00-\x1f\x7f]([^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?")


def label_names(classes: np.ndarray) -> list[str]:
    """The names the corpus file holds for classes_: str(label) when each is distinct and plain (what the corpus
    stage reads back unchanged: no surrounding space, no control character), else class_0, class_1, ...

    label_names(np.array(['neg', 'pos'])) -> ['neg', 'pos']; np.array([0, 1]) -> ['0', '1'];
    np.array([' a', 'a']) -> ['class_0', 'class_1']
    """
    names = [str(c) for c in classes]
    if len(set(names)) == len(names) and all(_PLAIN.fullmatch(n) for n in names):
        return names
    return [f"class_{i}" for i in range(len(classes))]


def _config_layer(config: dict | None) -> dict:
    """{"classifier.max_length": 200, "lsa": {"min_df": 1}} -> {"classifier": {"max_length": 200}, "lsa": {"min_df": 1}};
    {"embeddings.glove.window": 5} -> {"embeddings": {"glove": {"window": 5}}}"""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"ULMFiTClassifier's config must be a dict of settings such as {{\"classifier.max_length\": 200}}, "
                          f"got {type(config).__name__}")
    from nlp_pipeline.core.config import set_dotted

    layer: dict[str, dict] = {}
    for key, value in config.items():
        path = str(key).split(".")
        if len(path) > 1 and all(path):  # "classifier.max_length", or "embeddings.glove.window" in a sub-table
            set_dotted(layer, path, value, f"ULMFiTClassifier config key {key!r}")
        elif isinstance(value, dict):
            layer.setdefault(str(key), {}).update(value)
        else:
            raise ConfigError(f"ULMFiTClassifier config key {key!r} is not stage.field (e.g. \"classifier.max_length\") "
                              f"nor a stage with a dict of its settings")
    return layer


def _silent(line: str) -> None:
    pass


def _stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr)


__all__ = ["ULMFiTClassifier", "as_texts", "label_names"]
