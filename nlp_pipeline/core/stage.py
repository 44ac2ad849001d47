"""A stage: a named, versioned pure function from a frozen config dataclass and upstream artifacts to an artifact.

    STAGE = Stage(name="lsa", version=1, config=LsaConfig, inputs={"tokens": "tokenization"}, run=fit_lsa)

`inputs` maps the run function's keyword arguments to the stage that usually produces them; the pipeline
wires stage *instances* (the same stage applied to another corpus is another instance with another key).
`volatile` names config fields that cannot change the output (workers, inference batch size): they are left
out of the key; a dotted name ("pretrained.path") drops one field of a nested config, a nested config's own
name all of it. `fingerprint`, when given, returns extra key material computed from the config alone, such as
the sha256 of the files a corpus reads, so that editing a file changes the key.
Bump `version` by hand, with a one-line reason beside it, whenever the code changes what the stage outputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from nlp_pipeline.core.hashing import STORE_FORMAT, key


@dataclass(frozen=True)
class Stage:
    name: str                                   # short identifier, also the store sub-folder
    version: int                                # bumped by hand when the output of the code changes
    config: type                                # a frozen dataclass of JSON-typed fields with defaults
    inputs: dict[str, str]                      # run() keyword -> upstream stage name
    run: Callable[..., Any]                     # run(cfg, **inputs) -> artifact; pure
    optional: tuple[str, ...] = ()              # inputs that may be absent (passed as None), e.g. no pretrained LM
    volatile: tuple[str, ...] | Callable[[Any], tuple[str, ...]] = ()  # config fields left out of the key, dotted
                                                # inside nested configs (or cfg -> such a tuple, e.g. per method)
    fingerprint: Callable[[Any], Any] | None = None  # cfg -> JSON value added to the key (e.g. file hashes), or None
    describe: Callable[[Any], str] | None = field(default=None)  # cfg -> short text for the log line
    summary: Callable[[Any], dict] | None = field(default=None)   # artifact -> small JSON dict kept in meta.json
    collective: bool = False                    # trains data-parallel: in a multi-process run every process runs
                                                # it (rank 0 saves); other stages run on rank 0 only. Not in the key

    def key_payload(self, cfg: Any, upstream: dict[str, str]) -> dict:
        """What the key of this stage, with this config and these upstream keys, is computed from."""
        volatile = self.volatile(cfg) if callable(self.volatile) else self.volatile
        config = dataclasses.asdict(cfg)
        for name in volatile:  # "workers", or a dotted name inside a nested config: "pretrained.path"
            *parents, leaf = name.split(".")
            table = config
            for part in parents:
                table = table.get(part) if isinstance(table, dict) else None
            if isinstance(table, dict):  # a nested config that is None has nothing to drop
                table.pop(leaf, None)
        payload = {
            "stage": self.name,
            "version": self.version,
            "store_format": STORE_FORMAT,
            "config": config,
            "upstream": dict(sorted(upstream.items())),
        }
        material = self.fingerprint(cfg) if self.fingerprint is not None else None
        if material is not None:  # None: nothing beyond the config identifies the output
            payload["fingerprint"] = material
        return payload

    def key(self, cfg: Any, upstream: dict[str, str]) -> str:
        return key(self.key_payload(cfg, upstream))
