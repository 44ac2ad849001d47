"""One module per stage: a Config dataclass, a pure function, and STAGE = Stage(...) at the bottom."""
